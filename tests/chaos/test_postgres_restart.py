"""Stop PostgreSQL under a running ``shelfguard serve`` and start it again (``pg.sh stop`` /
``pg.sh start`` on the service's own cluster), while a client keeps writing scores and reading.

One outage (a module fixture), two verdicts:

- the service recovered and lost nothing: it answers again without a restart, and no accepted
  write was lost or applied twice (the client retries each refused write with the same
  ``Idempotency-Key`` until it is accepted; the database holds exactly one alert per written
  key; the audit hash chain is intact);
- requests during the outage fail cleanly: every one gets an HTTP answer, 503 with a JSON error
  that says the database is unavailable, while ``/healthz`` stays 200 and ``/readyz`` is 503.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest

from tests.chaos.conftest import score_row, start_service
from tests.chaos.figures import report
from tests.integration.conftest import BIN, REPO, Processes, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

WRITES = 60
BEFORE = 20  # keys written in one batch before the writer starts
OUTAGE_S = 4.0


@dataclass
class Outcome:
    at: float
    what: str  # "write", "read" or "readyz"
    status: int | None  # None: no HTTP answer (transport error)
    body: str


@dataclass
class Log:
    outcomes: list[Outcome] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, what: str, status: int | None, body: str) -> None:
        with self.lock:
            self.outcomes.append(Outcome(time.monotonic(), what, status, body[:300]))

    def between(self, start: float, end: float, *what: str) -> list[Outcome]:
        return [o for o in self.outcomes if start <= o.at <= end and o.what in what]


def call(log: Log, what: str, send, *args: Any, **kwargs: Any) -> httpx.Response | None:  # noqa: ANN001
    """One request, logged; None when no HTTP answer came back."""
    try:
        r = send(*args, **kwargs)
    except httpx.HTTPError as exc:
        log.add(what, None, f"{type(exc).__name__}: {exc}")
        return None
    log.add(what, r.status_code, r.text)
    return r


@dataclass
class Scenario:
    url: str
    log: Log
    accepted: dict[int, list[int]]
    attempts: Counter[int]
    down_at: float
    stopped_at: float
    up_at: float
    back_at: float
    stop_s: float
    start_s: float
    pid_unchanged: bool
    service_alive: bool
    seconds: float


@pytest.fixture(scope="module")
def outage(private_postgres, tmp_path_factory) -> Scenario:
    started = time.monotonic()
    processes = Processes(tmp_path_factory.mktemp("pg-restart"))
    url = private_postgres.new_database()
    service = start_service(
        processes, url, {"admin": "admin", "olga": "ops"}, background_interval_s="0.5"
    )
    pid = service.proc.popen.pid
    log = Log()
    accepted: dict[int, list[int]] = {}
    attempts: Counter[int] = Counter()
    stop_reading, give_up = threading.Event(), threading.Event()
    olga = service.headers("olga")

    def write(c: httpx.Client, sku: str, key: str) -> httpx.Response | None:
        return call(
            log, "write", c.post, "/scores", json={"scores": [score_row(sku)]},
            headers={**olga, "Idempotency-Key": key},
        )  # fmt: skip

    def writer() -> None:
        with service.client(timeout=10) as c:
            for i in range(WRITES):
                while not give_up.is_set():
                    attempts[i] += 1
                    r = write(c, f"SKU-W{i:03d}", f"w-{i}")
                    if r is not None and r.status_code == 200:
                        accepted[i] = r.json()["alerts"]
                        break
                    time.sleep(0.2)
                time.sleep(0.1)

    def reader() -> None:
        with service.client(timeout=10) as c:
            while not stop_reading.is_set():
                call(log, "read", c.get, "/alerts?limit=5", headers=olga)
                call(log, "readyz", c.get, "/readyz")
                time.sleep(0.1)

    try:
        with service.client(timeout=10) as c:
            first = c.post(
                "/scores",
                json={"scores": [score_row(f"SKU-B{i:03d}") for i in range(BEFORE)]},
                headers={**olga, "Idempotency-Key": "before"},
            )
        assert first.status_code == 200 and len(first.json()["alerts"]) == BEFORE, first.text
        threads = [threading.Thread(target=f, daemon=True) for f in (writer, reader)]
        for t in threads:
            t.start()
        wait_until(lambda: len(accepted) >= 15, timeout=60, what="15 writes before the outage")
        down_at = time.monotonic()
        stop_s = private_postgres.script("stop")
        stopped_at = time.monotonic()
        time.sleep(OUTAGE_S)
        with service.client(timeout=10) as c:
            call(log, "healthz", c.get, "/healthz")
            write(c, "SKU-OUTAGE", "outage")  # refused now, retried below with the same key
        up_at = time.monotonic()
        start_s = private_postgres.script("start")
        back_at = time.monotonic()
        threads[0].join(timeout=120)
        assert not threads[0].is_alive(), "the writer did not finish after the database came back"
        stop_reading.set()
        threads[1].join(timeout=30)
        with service.client(timeout=10) as c:
            retried = write(c, "SKU-OUTAGE", "outage")
            assert retried is not None and retried.status_code == 200, log.outcomes[-1]
            replayed = write(c, "SKU-OUTAGE", "outage")
            assert replayed is not None and replayed.headers.get("Idempotency-Replayed") == "true"
        return Scenario(
            url, log, accepted, attempts, down_at, stopped_at, up_at, back_at, stop_s, start_s,
            pid_unchanged=service.proc.popen.pid == pid, service_alive=service.proc.alive,
            seconds=time.monotonic() - started,
        )  # fmt: skip
    finally:
        give_up.set()
        stop_reading.set()
        if any(p.popen.poll() not in (None, -9) for p in processes.started):
            print(processes.report())
        processes.stop_all()


def probes_while_down(scenario: Scenario) -> list[Outcome]:
    """/healthz and /readyz answers between the end of ``pg.sh stop`` and ``pg.sh start``."""
    return scenario.log.between(scenario.stopped_at, scenario.up_at, "readyz", "healthz")


def refusals(scenario: Scenario) -> list[Outcome]:
    """API requests (writes and reads, not the readiness probe) not answered 200 in the outage."""
    during = scenario.log.between(scenario.down_at, scenario.back_at, "write", "read")
    return [o for o in during if o.status != 200]


def test_service_recovers_and_loses_no_accepted_write(outage: Scenario):
    log = outage.log
    during = log.between(outage.down_at, outage.back_at, "write", "read")
    refused = refusals(outage)
    first_ok_after = min(
        (o.at for o in log.outcomes if o.at > outage.back_at and o.status == 200
         and o.what in ("write", "read")),
        default=float("nan"),
    )  # fmt: skip
    ready_again = min(
        (o.at for o in log.outcomes if o.at > outage.up_at and o.what == "readyz"
         and o.status == 200),
        default=float("nan"),
    )  # fmt: skip
    probes = probes_while_down(outage)
    with psycopg.connect(outage.url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        per_sku = dict(
            conn.execute(
                "SELECT sku, count(*) FROM alerts WHERE kind = 'phantom' GROUP BY sku"
            ).fetchall()
        )
    written = {f"SKU-B{i:03d}" for i in range(BEFORE)} | {f"SKU-W{i:03d}" for i in range(WRITES)}
    written.add("SKU-OUTAGE")
    lost = sorted(written - set(per_sku))
    doubled = sorted(k for k, n in per_sku.items() if n > 1)
    audit = subprocess.run(
        [str(BIN / "shelfguard"), "audit", "verify", "--database-url", outage.url],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    by_status = {
        what: dict(Counter(str(o.status) for o in refused if o.what == what))
        for what in ("write", "read")
    }
    transport = [o for o in refused if o.status is None]
    answered = [o for o in refused if o.status is not None]
    figures = {
        "pg.sh stop s / down s / pg.sh start s": f"{outage.stop_s:.1f} / {OUTAGE_S:.0f} / "
        f"{outage.start_s:.1f}",
        "API requests during the outage / refused": f"{len(during)} / {len(refused)}",
        "refused writes by status (None = no HTTP answer)": by_status["write"],
        "refused reads by status (None = no HTTP answer)": by_status["read"],
        "example answer": (answered[0].body if answered else "-")[:100],
        "example transport error": (transport[0].body if transport else "-")[:100],
        "/healthz, /readyz during the outage": dict(
            Counter(f"{o.what} {o.status}" for o in probes)
        ),
        "service process": "same pid, never restarted"
        if outage.pid_unchanged and outage.service_alive
        else "DIED or restarted",
        "first API 200 after pg.sh start returned s": round(first_ok_after - outage.back_at, 2),
        "/readyz 200 again after pg.sh start was called s": round(ready_again - outage.up_at, 2),
        "writes accepted / attempts (retries with the same key)": f"{len(outage.accepted) + 1}"
        f" / {sum(outage.attempts.values()) + 2} ({sum(outage.attempts.values()) - WRITES + 1})",
        "keys written / alerts stored / lost / stored twice": f"{len(written)} / "
        f"{sum(per_sku.values())} / {len(lost)} / {len(doubled)}",
        "audit chain after the outage": (audit.stdout.strip().splitlines() or ["?"])[-1],
        "scenario wall time s": round(outage.seconds, 1),
    }
    report("postgres_restart", f"pg.sh stop, {OUTAGE_S:.0f} s down, pg.sh start under "
           "`shelfguard serve` (writer + reader running)", figures)  # fmt: skip

    assert refused, "no request reached the service while the database was down"
    assert outage.pid_unchanged and outage.service_alive
    assert len(outage.accepted) == WRITES
    assert lost == [] and doubled == []
    assert sum(per_sku.values()) == len(written)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert first_ok_after - outage.back_at < 10 and ready_again - outage.up_at < 10
    assert [o.status for o in probes if o.what == "healthz"] == [200]
    assert not [o for o in probes if o.what == "readyz" and o.status == 200]


def test_requests_during_the_outage_fail_cleanly(outage: Scenario):
    refused = refusals(outage)
    assert refused
    assert all(o.status == 503 for o in refused), Counter(o.status for o in refused)
    assert all('"error"' in o.body and "database" in o.body.lower() for o in refused)
    assert {o.status for o in probes_while_down(outage) if o.what == "readyz"} == {503}
