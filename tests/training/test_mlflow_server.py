"""Training and the gate against a real ``mlflow server`` process on loopback."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.training.conftest import TINY_HOLDOUT, TINY_TRAIN
from training import registry
from training.train import train

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{home / 'server.db'}",
            "--artifacts-destination",
            str(home / "artifacts"),
        ],
        stdout=(home / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail(f"mlflow server did not answer: {(home / 'server.log').read_text()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_train_registers_and_gates_on_a_real_server(
    mlflow_server, tiny_worlds, monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    reports = train(
        worlds_root=tiny_worlds,
        tracking_uri=mlflow_server,
        progress=lambda _m: None,
        train_worlds=TINY_TRAIN,
        holdout_worlds=TINY_HOLDOUT,
    )
    assert len(reports) == 2
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    for name in ("phantom-inventory", "stockout-risk"):
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    registry.configure(mlflow_server)
    model = registry.load_registered("models:/stockout-risk@champion")
    assert model.predict(model.reference).shape == (len(model.reference),)
