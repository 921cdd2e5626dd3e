"""Score ingest: what `shelfguard alerts consume` does per score message, on SQLite and PostgreSQL.

Per message: parse (pydantic's JSON parser, against the careful dict path as the baseline), then
``ActionService.ingest_scores`` in batches of 500 (one set-based position upsert per batch; the
scores here are below the alert floor, as almost all are in production). The database's own
ceiling is measured in the same run: a plain ``executemany`` INSERT of the same number of rows
into an empty table of the same shape, so the ingest figure reads as a ratio against it.

``python -m bench.score_ingest [--messages 20000] [--postgres URL]``; without ``--postgres`` it
starts the local PostgreSQL (``infra/postgres/pg.sh``) when it can and skips it otherwise.
Writes ``bench/results/score_ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.feature_flow import machine
from pipelines.features import FEATURES

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BATCH = 500
KEYS = 2_000


def messages(n: int) -> list[bytes]:
    base = datetime(2026, 11, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        when = (base + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
        out.append(
            json.dumps(
                {
                    "sku": f"SKU-{i % KEYS}",
                    "location": f"S{i % 7:02d}",
                    "phantom_score": 0.01,
                    "stockout_score": 0.02,
                    "phantom_explanation": "",
                    "stockout_explanation": "",
                    "on_hand": 5 + i % 9,
                    "reserved": i % 3,
                    "atp": 5,
                    "as_of": when,
                    "phantom_model": "phantom-inventory:1",
                    "stockout_model": "stockout-risk:1",
                    "unit_value": 3.5,
                    "occurred_at": when,
                    "scored_at": when,
                    "features": {
                        f.name: (None if j % 7 == 0 else 1.5) for j, f in enumerate(FEATURES)
                    },
                }
            ).encode()
        )
    return out


def per_s(n: int, seconds: float) -> int:
    return round(n / seconds)


def measure(url: str, raw: list[bytes]) -> dict[str, Any]:
    from serving.api import Runtime
    from serving.publisher import MemoryPublisher
    from serving.score_feed import parse_score, parse_score_message
    from serving.settings import ServiceSettings

    settings = ServiceSettings(env="test", token_pepper=uuid.uuid4().hex, database_url=url)
    runtime = Runtime(settings, lambda: datetime.now(UTC), MemoryPublisher(), None)  # type: ignore[arg-type]
    runtime.store.migrate()
    start = time.perf_counter()
    careful = [parse_score(json.loads(m)) for m in raw]
    careful_s = time.perf_counter() - start
    start = time.perf_counter()
    parsed = [parse_score_message(m) for m in raw]
    fast_s = time.perf_counter() - start
    assert parsed == careful
    start = time.perf_counter()
    for i in range(0, len(parsed), BATCH):
        runtime.service.ingest_scores(parsed[i : i + BATCH], "bench")  # type: ignore[arg-type]
    ingest_s = time.perf_counter() - start
    with runtime.store.engine.begin() as conn:
        conn.execute(
            text("CREATE TABLE bench_rows (sku varchar(100), location varchar(100), n int)")
        )
    start = time.perf_counter()
    for i in range(0, len(parsed), BATCH):
        with runtime.store.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO bench_rows (sku, location, n) VALUES (:sku, :location, :n)"),
                [
                    {"sku": p.sku, "location": p.location, "n": p.on_hand}
                    for p in parsed[i : i + BATCH]
                ],  # type: ignore[union-attr]
            )
    insert_s = time.perf_counter() - start
    runtime.store.dispose()
    return {
        "parse_careful_per_s": per_s(len(raw), careful_s),
        "parse_fast_per_s": per_s(len(raw), fast_s),
        "ingest_per_s": per_s(len(raw), ingest_s),
        "plain_insert_per_s": per_s(len(raw), insert_s),
        "ingest_vs_plain_insert": round(insert_s / ingest_s, 3),
        "consume_per_s": per_s(len(raw), fast_s + ingest_s),
    }


def postgres_url() -> str | None:
    pg = REPO / "infra" / "postgres" / "pg.sh"
    try:
        subprocess.run(["bash", str(pg), "start"], check=True, capture_output=True, timeout=180)
        dsn = subprocess.run(
            ["bash", str(pg), "dsn"], check=True, capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return None
    import psycopg

    host = dsn.split("@", 1)[1].split("/", 1)[0]
    name = f"sg_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"postgresql://postgres@{host}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER shelfguard')
    return f"postgresql+psycopg://shelfguard:shelfguard@{host}/{name}"


def drop_database(url: str) -> None:
    import psycopg

    host, name = url.split("@", 1)[1].split("/", 1)
    with psycopg.connect(f"postgresql://postgres@{host}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--postgres", default=None, help="SQLAlchemy URL of an empty database")
    args = parser.parse_args(argv if argv is not None else [])
    raw = messages(args.messages)
    result: dict[str, Any] = {"machine": machine(), "messages": len(raw), "batch": BATCH}
    with tempfile.TemporaryDirectory() as tmp:
        result["sqlite"] = measure(f"sqlite:///{tmp}/ingest.db", raw)
    url = args.postgres or postgres_url()
    result["postgresql"] = measure(url, raw) if url else None
    if url and not args.postgres:
        drop_database(url)
    print(f"score ingest, {len(raw):,} messages, batches of {BATCH} (msgs/s)")
    print(
        f"{'store':<11} {'parse careful':>13} {'parse fast':>10} {'ingest':>8} "
        f"{'plain INSERT':>12} {'consume':>8}"
    )
    for store in ("sqlite", "postgresql"):
        r = result[store]
        if r is None:
            print(f"{store:<11} skipped (no PostgreSQL)")
            continue
        print(
            f"{store:<11} {r['parse_careful_per_s']:>13,} {r['parse_fast_per_s']:>10,} "
            f"{r['ingest_per_s']:>8,} {r['plain_insert_per_s']:>12,} {r['consume_per_s']:>8,}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "score_ingest.json").write_text(json.dumps(result, indent=2))
    return result


def summary(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for store in ("sqlite", "postgresql"):
        r = result.get(store)
        if r:
            rows.append(
                (
                    f"score ingest msgs/s ({store})",
                    f"{r['consume_per_s']:,} parse+ingest; ingest {r['ingest_per_s']:,} = "
                    f"{r['ingest_vs_plain_insert']:.0%} of a plain INSERT",
                )
            )
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
