"""Load figures of the approval service: p50/p99 latency of ATP reads and of decisions at fixed
request rates, against a real ``shelfguard serve`` (uvicorn, one worker) on this machine.

Open-loop: requests are *scheduled* at the stated rate (so a slow server cannot slow the load
down and hide its queueing); latency is measured from the scheduled send time to the response.
Every run is bounded in count and time and targets 127.0.0.1 only.

Setup per backend: users, then N scores whose ATP holds need approval (N pending
recommendations); a decision = an approver approving a distinct hold (state change, effect,
audit rows, ATP update published). Effects go to the real Kafka broker when it is reachable at
127.0.0.1:9092, else to the in-memory publisher (recorded in the results).

``python -m bench.api_load`` writes ``bench/results/api_load.json``.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SHELFGUARD = str(REPO / ".venv" / "bin" / "shelfguard")
OUT = REPO / "bench" / "results" / "api_load.json"
ATP_RATES = (100, 200)
DECISION_RATES = (10, 25)
SECONDS = 8


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def kafka_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 9092), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_loop(send, rate: float, seconds: float) -> dict:  # noqa: ANN001
    """Schedule ``rate × seconds`` calls of ``send(i)`` at fixed intervals; latency per call
    from its scheduled time. Returns p50/p99 in ms, achieved rate, errors."""
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    start = time.perf_counter() + 0.2

    def one(i: int) -> None:
        nonlocal errors
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        ok = send(i)
        elapsed = time.perf_counter() - due
        with lock:
            latencies.append(elapsed)
            errors += 0 if ok else 1

    with ThreadPoolExecutor(max_workers=64) as pool:
        list(pool.map(one, range(total)))
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "rate_rps": rate,
        "requests": total,
        "achieved_rps": round(total / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000, 2),
        "errors": errors,
    }


def run_backend(name: str, database_url: str, kafka: bool) -> dict:
    env = {
        **os.environ,
        "SHELFGUARD_DATABASE_URL": database_url,
        "SHELFGUARD_BACKGROUND_INTERVAL_S": "0",
    }
    if not kafka:
        env["SHELFGUARD_KAFKA_BOOTSTRAP"] = ""
    tokens = {}
    for user, role in (("olga", "ops"), ("ana", "approver")):
        done = subprocess.run(
            [SHELFGUARD, "users", "create", user, "--role", role],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        tokens[user] = {"Authorization": f"Bearer {done.stdout.strip().splitlines()[-1]}"}
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603
        [SHELFGUARD, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            time.sleep(0.2)
        n = sum(int(r * SECONDS) for r in DECISION_RATES)
        rows = [
            {
                "sku": f"SKU-{i}",
                "location": f"S{i % 20:02d}",
                "phantom_score": 0.7,
                "stockout_score": 0.1,
                "phantom_explanation": "bench",
                "stockout_explanation": "",
                "on_hand": 40,
                "reserved": 5,
                "as_of": "2026-03-02T08:00:00Z",
                "phantom_model": "phantom-inventory:3",
                "stockout_model": "stockout-risk:3",
                "unit_value": 10.0,
            }
            for i in range(n)
        ]
        with httpx.Client(base_url=base, timeout=60) as c:
            for chunk in range(0, n, 500):
                r = c.post(
                    "/scores", json={"scores": rows[chunk : chunk + 500]}, headers=tokens["olga"]
                )
                r.raise_for_status()
            holds = [
                x["id"]
                for x in c.get(
                    "/recommendations?state=pending&limit=1000", headers=tokens["ana"]
                ).json()
                if x["action"] == "lower_atp_exposure"
            ]
        assert len(holds) >= n, (len(holds), n)
        client = httpx.Client(base_url=base, timeout=30, limits=httpx.Limits(max_connections=64))

        def atp(i: int) -> bool:
            r = client.get(f"/atp/SKU-{i % n}/S{(i % n) % 20:02d}", headers=tokens["olga"])
            return r.status_code == 200

        queue = iter(holds)
        qlock = threading.Lock()

        def decision(_i: int) -> bool:
            with qlock:
                rec = next(queue)
            r = client.post(
                f"/recommendations/{rec}/decision",
                json={"decision": "approve"},
                headers=tokens["ana"],
            )
            return r.status_code == 200 and r.json()["state"] == "applied"

        results = {
            "backend": name,
            "effects": "kafka" if kafka else "in-memory publisher",
            "atp_reads": [open_loop(atp, rate, SECONDS) for rate in ATP_RATES],
            "decisions": [open_loop(decision, rate, SECONDS) for rate in DECISION_RATES],
        }
        client.close()
        return results
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> dict:
    kafka = kafka_up()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        runs.append(run_backend("sqlite", f"sqlite:///{tmp}/bench.db", kafka))
    pg = subprocess.run(["bash", str(REPO / "infra/postgres/pg.sh"), "status"], capture_output=True)
    if pg.returncode == 0:
        import uuid

        import psycopg

        name = f"sg_bench_{uuid.uuid4().hex[:8]}"
        admin = "postgresql://postgres@127.0.0.1:55432/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER shelfguard')
        try:
            url = f"postgresql+psycopg://shelfguard:shelfguard@127.0.0.1:55432/{name}"
            runs.append(run_backend("postgresql", url, kafka))
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    result = {
        "machine": machine(),
        "seconds_per_rate": SECONDS,
        "server": "uvicorn, 1 worker",
        "runs": runs,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"machine: {result['machine']['cpu']} × {result['machine']['cores']} cores")
    for run in runs:
        for kind in ("atp_reads", "decisions"):
            for row in run[kind]:
                print(
                    f"{run['backend']:10} {kind:10} {row['rate_rps']:>5} rps"
                    f"  p50 {row['p50_ms']:>8} ms  p99 {row['p99_ms']:>8} ms"
                    f"  achieved {row['achieved_rps']} rps  errors {row['errors']}"
                )
    return result


def summary(result: dict) -> list[tuple[str, str]]:
    """The figures of this benchmark for ``bench.run_all``'s final table."""
    rows = []
    for run in result["runs"]:
        for kind, label in (("atp_reads", "ATP read"), ("decisions", "decision")):
            for row in run[kind]:
                rows.append(
                    (
                        f"API {label} at {row['rate_rps']} req/s ({run['backend']})",
                        f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms "
                        f"(achieved {row['achieved_rps']} req/s, {row['errors']} errors)",
                    )
                )
    return rows


if __name__ == "__main__":
    main()
