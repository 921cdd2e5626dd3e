"""``shelfguard demo`` as a user runs it: a tiny world, the real service, flow and (with
``--kafka``) broker; alerts and an approvable recommendation appear through the API; Ctrl-C
(SIGINT) ends it with exit code 0 and no process of its tree left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_table() -> dict[int, tuple[int, str, str]]:
    """pid → (parent pid, state, start time) of every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            table[int(entry.name)] = (int(fields[1]), fields[0], fields[19])
    return table


def descendants(root: int) -> dict[int, str]:
    """pid → start time of every process below ``root``."""
    table = process_table()
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _state, start) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = start
                frontier.append(pid)
    return found


def still_running(procs: dict[int, str]) -> list[str]:
    table = process_table()
    left = []
    for pid, start in procs.items():
        entry = table.get(pid)
        if entry is not None and entry[2] == start and entry[1] != "Z":
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            left.append(f"{pid}: {cmdline.decode(errors='replace')[:120]}")
    return left


def cmdlines(procs: dict[int, str]) -> str:
    out = []
    for pid in procs:
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return "\n".join(out)


def wait_until(condition, timeout: float, what: str, log: Path, demo: subprocess.Popen):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except (httpx.HTTPError, OSError, ValueError):
            value = None
        if value:
            return value
        tail = log.read_text(errors="replace")[-3000:]
        assert demo.poll() is None, f"demo exited ({demo.returncode}) before {what}:\n{tail}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{tail}"
        time.sleep(0.5)


@pytest.mark.parametrize("mode", ["embedded", "kafka"])
def test_demo_shows_alerts_and_a_pending_recommendation_and_ctrl_c_cleans_up(
    mode, tmp_path, packaged_registry, request
) -> None:
    shutil.copy(packaged_registry, tmp_path / "mlflow.db")  # champions v1, already registered
    port = free_port()
    prefix = f"test-demo-{uuid.uuid4().hex[:8]}"
    argv = [
        str(BIN / "shelfguard"), "demo", "--out", str(tmp_path / "live"),
        "--stores", "3", "--skus", "40", "--days", "10", "--seconds-per-day", "1.5",
        "--port", str(port), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
    ]  # fmt: skip
    kafka_broker = request.getfixturevalue("kafka_broker") if mode == "kafka" else ""
    if mode == "kafka":
        argv += ["--kafka", "--bootstrap", kafka_broker, "--topic-prefix", prefix]
        argv += ["--mlflow-port", "0"]
    else:
        argv += ["--mlflow-port", str(free_port())]  # its server spawns children of its own
    log = tmp_path / "demo.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHELFGUARD_")}
    with log.open("wb") as fh:
        demo = subprocess.Popen(  # noqa: S603
            argv, cwd=tmp_path, stdout=fh, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
    tree: dict[int, str] = {}
    try:
        users = tmp_path / "live" / "users.json"
        tokens = wait_until(lambda: json.loads(users.read_text()), 120, "the demo users", log, demo)
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

        def get(path: str, user: str, **params: object) -> list:
            headers = {"Authorization": f"Bearer {tokens[user]}"}
            response = api.get(path, params=params, headers=headers)
            response.raise_for_status()
            return response.json()

        alerts = wait_until(
            lambda: get("/alerts", "olga"), 120, "a first alert in the service", log, demo
        )
        pending = wait_until(
            lambda: get("/recommendations", "ana", state="pending"),
            120,
            "a pending recommendation",
            log,
            demo,
        )
        assert pending[0]["state"] == "pending" and pending[0]["requested_by"]
        assert alerts[0]["model"] in {
            "phantom-inventory:v1 (champion)",  # scored by the registry's champions
            "stockout-risk:v1 (champion)",
        }
        assert api.get("/ui/login").status_code == 200
        assert api.get("/docs").status_code == 200
        api.close()

        tree = descendants(demo.pid)
        names = cmdlines(tree)
        assert "serve" in names and "score-stream" in names
        assert ("alerts consume" in names) if mode == "kafka" else ("mlflow" in names)

        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0, log.read_text(errors="replace")[-3000:]
        assert still_running(tree) == []
        text = log.read_text(errors="replace")
        assert "Web UI" in text and "/docs" in text and tokens["ana"] in text
        summary = json.loads((tmp_path / "live" / "summary.json").read_text())
        assert summary["alerts"] >= 1
        assert summary["event_to_alert"]["alerts_measured"] >= 1
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(timeout=30)
        for pid in tree:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if mode == "kafka":
            from confluent_kafka.admin import AdminClient

            admin = AdminClient({"bootstrap.servers": kafka_broker})
            mine = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
            if mine:
                admin.delete_topics(mine, operation_timeout=30)
