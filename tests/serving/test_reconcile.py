"""Reconciliation (issue 6, item 3): the stream's positions against an ERP balance extract and
WMS positions. A simulated world gives the truth: an ERP extract built from the last day's
recorded on-hand agrees with the stream everywhere, so exactly the rows we perturb beyond the
tolerance must become exceptions — with both figures and the last events of their key — and
running again adds nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.events import Rejection, parse_event
from pipelines.simulator import simulate
from serving.cli import app
from serving.reconcile import Mismatch, Tolerance, reconcile
from serving.reconcile_job import RunResult, read_stream, run_every, run_once
from tests.serving.conftest import REPO, csrf_token_of_page

runner = CliRunner()
AS_OF = datetime(2026, 3, 2, tzinfo=UTC)

# -- the pure comparison ---------------------------------------------------------------------


def test_tolerance_absolute_and_relative() -> None:
    assert Tolerance().allows(5, 5) and not Tolerance().allows(5, 6)
    assert Tolerance(absolute=2).allows(10, 12) and not Tolerance(absolute=2).allows(10, 13)
    rel = Tolerance(relative=0.1)  # 10 % of the larger figure
    assert rel.allows(100, 90) and not rel.allows(100, 89)
    assert Tolerance(absolute=3, relative=0.1).allows(10, 13)  # the larger allowance wins
    with pytest.raises(ValueError):
        Tolerance(absolute=-1)


def test_reconcile_reports_both_figures_and_missing_keys() -> None:
    stream = {("A", "S1"): 10, ("B", "S1"): 4, ("C", "S1"): 0}
    erp = {("A", "S1"): 10, ("B", "S1"): 9, ("D", "S1"): 2}
    events = {("B", "S1"): ({"event_id": "e2"}, {"event_id": "e1"})}
    found = reconcile(stream, {"erp": erp}, as_of=AS_OF, tolerance=Tolerance(1), last_events=events)
    assert found == [
        Mismatch("B", "S1", "erp", AS_OF, 4, 9, -5, ({"event_id": "e2"}, {"event_id": "e1"})),
        Mismatch("D", "S1", "erp", AS_OF, None, 2, -2, ()),  # not in the stream: 0 there
    ]  # C: 0 in the stream, absent from the extract -> agrees
    with pytest.raises(ValueError, match="UTC"):
        reconcile(stream, {"erp": erp}, as_of=AS_OF.replace(tzinfo=None), tolerance=Tolerance())


# -- a simulated world -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("recon-world")
    simulate(out, seed=23, stores=3, skus=30, days=10, progress=False)
    return out


def last_day(world: Path) -> pd.DataFrame:
    truth = pd.read_parquet(world / "truth.parquet")
    last = truth[truth["day"] == truth["day"].max()].copy()
    last["sku"], last["location"] = last["sku"].astype(str), last["location"].astype(str)
    return last.reset_index(drop=True)


def expected_last_events(world: Path, n: int = 5) -> dict[tuple[str, str], list[str]]:
    """Independently of the replay: each key's valid, distinct events, newest first by event
    time (file order breaks ties)."""
    seen: set[str] = set()
    by_key: dict[tuple[str, str], list[tuple[datetime, int, str]]] = defaultdict(list)
    for i, line in enumerate((world / "events.jsonl").read_text().splitlines()):
        event = parse_event(line)
        if isinstance(event, Rejection) or event.event_id in seen:
            continue
        seen.add(event.event_id)
        by_key[(event.sku, event.location)].append((event.occurred_at, i, event.event_id))
    return {k: [eid for _t, _i, eid in sorted(v, reverse=True)[:n]] for k, v in by_key.items()}


def write_extract(frame: pd.DataFrame, path: Path, as_of: str | None = None) -> Path:
    out = frame[["sku", "location"]].copy()
    out["on_hand"] = frame["recorded_on_hand"].astype(int)
    if as_of is not None:
        out["as_of"] = as_of
    out.to_csv(path, index=False)
    return path


def test_stream_positions_match_the_simulators_record(world) -> None:
    truth = last_day(world)
    view = read_stream(world / "events.jsonl")
    record = {(r.sku, r.location): int(r.recorded_on_hand) for r in truth.itertuples()}
    assert view.positions == record and len(record) == 120


def test_perturbed_rows_become_exceptions_once(world, make_service, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SHELFGUARD_KAFKA_BOOTSTRAP", "")
    truth = last_day(world)
    end_of_day = (pd.Timestamp(truth["day"].iloc[0]) + pd.Timedelta(days=1)).tz_localize("UTC")
    erp = truth.copy()
    nonzero = erp.index[erp["recorded_on_hand"] >= 4]
    changes = {nonzero[0]: +5, nonzero[1]: -3, nonzero[2]: None, nonzero[3]: +1}  # None: to 0
    for row, delta in changes.items():
        value = erp.at[row, "recorded_on_hand"]
        erp.at[row, "recorded_on_hand"] = 0 if delta is None else value + delta
    wms = truth.copy()
    wms.at[nonzero[5], "recorded_on_hand"] += 2
    erp_csv = write_extract(erp, tmp_path / "erp.csv", as_of=end_of_day.isoformat())
    wms_csv = write_extract(wms, tmp_path / "wms.csv")  # no as_of: the stream's last event

    url = f"sqlite:///{tmp_path}/recon.db"
    svc = make_service(url)
    args = ["reconcile", "--events", str(world / "events.jsonl"), "--erp", str(erp_csv)]
    args += ["--wms", str(wms_csv), "--tolerance", "1", "--database-url", url]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "new exceptions" in done.output

    found = svc.get("/exceptions?limit=1000", "olga").json()
    beyond = [nonzero[0], nonzero[1], nonzero[2]]  # +1 is within the tolerance of 1
    expected = {
        (truth.at[i, "sku"], truth.at[i, "location"], "erp"): (
            int(truth.at[i, "recorded_on_hand"]),
            int(erp.at[i, "recorded_on_hand"]),
        )
        for i in beyond
    }
    i = nonzero[5]
    expected[(truth.at[i, "sku"], truth.at[i, "location"], "wms")] = (
        int(truth.at[i, "recorded_on_hand"]),
        int(wms.at[i, "recorded_on_hand"]),
    )
    got = {(x["sku"], x["location"], x["source"]): x for x in found}
    assert set(got) == set(expected)
    last = expected_last_events(world)
    stream_end = read_stream(world / "events.jsonl").as_of
    for key, (stream_figure, source_figure) in expected.items():
        x = got[key]
        assert (x["stream_on_hand"], x["source_on_hand"]) == (stream_figure, source_figure)
        assert x["difference"] == stream_figure - source_figure
        assert x["tolerance"] == {"absolute": 1.0, "relative": 0.0}
        instant = end_of_day if key[2] == "erp" else stream_end
        assert datetime.fromisoformat(x["as_of"]) == instant
        assert [e["event_id"] for e in x["last_events"]] == last[key[:2]]
        assert all((e["sku"], e["location"]) == key[:2] for e in x["last_events"])

    # the same extracts again: nothing new (idempotent per key, source and as_of)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert len(svc.get("/exceptions?limit=1000", "olga").json()) == len(expected)
    audit = svc.get("/audit?limit=1000", "admin").json()
    assert sum(r["action"] == "reconciliation.exception" for r in audit) == len(expected)

    # a later extract with the same figures is a new instant: new exceptions (in-process here,
    # so this app's metrics count them)
    later = write_extract(
        erp, tmp_path / "erp-later.csv", as_of=(end_of_day + timedelta(days=1)).isoformat()
    )
    result = run_once(svc.runtime.service, world / "events.jsonl", [("erp", later)], Tolerance(1))
    assert len(result.created) == 3 and result.already_known == 0
    metrics = svc.client.get("/metrics").text
    assert 'shelfguard_reconciliation_exceptions_total{source="erp"} 3.0' in metrics

    # who may look, and the UI list
    assert svc.get("/exceptions", "dana").status_code == 403
    assert svc.client.get("/exceptions").status_code == 401
    assert (
        svc.get("/exceptions?source=wms", "ana").json()[0]["source_on_hand"]
        == (expected[next(k for k in expected if k[2] == "wms")][1])
    )
    svc.client.cookies.set("shelfguard_token", svc.tokens["olga"])
    csrf_token_of_page(svc.client)  # the page renders
    page = svc.client.get("/ui").text
    for x in found:
        assert f'id="exception-{x["id"]}"' in page
        assert f'data-testid="source-{x["id"]}">{x["source_on_hand"]}<' in page


def test_bad_extract_is_refused_with_the_line(world, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SHELFGUARD_KAFKA_BOOTSTRAP", "")
    bad = tmp_path / "erp.csv"
    bad.write_text("sku,location,on_hand\nSKU-00001,S001,3\nSKU-00001,S001,4\n")
    args = ["reconcile", "--events", str(world / "events.jsonl"), "--erp", str(bad)]
    done = runner.invoke(app, [*args, "--database-url", f"sqlite:///{tmp_path}/x.db"])
    assert done.exit_code == 2 and "erp.csv:3" in done.output and "twice" in done.output
    bad.write_text("sku,location,on_hand\nSKU-00001,S001,2.5\n")
    done = runner.invoke(app, [*args, "--database-url", f"sqlite:///{tmp_path}/x.db"])
    assert done.exit_code == 2 and "whole number" in done.output


def test_run_every_repeats_until_stopped() -> None:
    results = [RunResult(created=[i]) for i in range(5)]
    reported: list[RunResult] = []
    runs = run_every(0.0, lambda: results[len(reported)], reported.append, max_runs=3)
    assert runs == 3 and reported == results[:3]
    stop = threading.Event()
    stop.set()
    assert run_every(0.0, lambda: results[0], reported.append, stop=stop) == 0


def test_interval_mode_runs_until_ctrl_c(world, tmp_path) -> None:
    truth = last_day(world)
    erp = truth.copy()
    erp.at[0, "recorded_on_hand"] += 10
    erp_csv = write_extract(erp, tmp_path / "erp.csv")
    url = f"sqlite:///{tmp_path}/loop.db"
    env = {**os.environ, "SHELFGUARD_KAFKA_BOOTSTRAP": "", "COLUMNS": "200"}
    proc = subprocess.Popen(  # noqa: S603
        [
            str(REPO / ".venv" / "bin" / "shelfguard"),
            "reconcile",
            "--events",
            str(world / "events.jsonl"),
            "--erp",
            str(erp_csv),
            "--interval",
            "0.2",
            "--database-url",
            url,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    lines: list[str] = []
    assert proc.stdout is not None
    while sum("already recorded" in line for line in lines) < 3 and time.monotonic() < deadline:
        lines.append(proc.stdout.readline())
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    output = "".join(lines) + rest
    assert proc.returncode == 0, output
    assert "stopped" in output
    news = [line.split()[-2] for line in output.splitlines() if "new exceptions" in line]
    assert news[:3] == ["1", "0", "0"], output  # one exception, then nothing new each run
