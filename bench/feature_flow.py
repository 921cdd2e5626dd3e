"""Feature dataflow throughput against the engine's ceiling, and the memory a key costs.

On one bytewax worker, over the same events (a simulated world of ~350k lines):

- the feature flow (``pipelines.dataflow.build_flow``, ``emit="final"``, null sinks) from the
  JSONL file and from a bounded Kafka topic (8 partitions, read to its end);
- a trivial keyed flow on the same input: decode ``sku``/``location``/``quantity`` with a
  msgspec Struct, key ``sku|location``, running sum in ``stateful_batch``: the engine's ceiling;
- the streaming deployable (``pipelines.stream``, ``emit="updates"`` to a Kafka topic, bounded);
- the same feature flow without the Rust extension (``SHELFGUARD_NATIVE_BOOK=0``: Python parse
  and ledger step, the mypyc core) and all in pure Python (``SHELFGUARD_PURE_PYTHON=1``), each
  in a fresh process;
- where the time goes: the flow's own steps (``parse_batch``, the per-sku ledger step and its
  final states) timed inside a run of the feature flow (see :func:`logic_costs`); the rest of
  that run is the engine and its wiring.

Memory: RSS growth per key with 1M keys in a fresh subprocess, for the flow's ledger state
(the Rust book when built, else ``KeyState`` objects) after a few typical events and for a plain
``int`` per key (the cost of keeping a key at all), plus a steady-state profile (30 days of
activity per key, measured on fewer keys), and the pickled recovery
snapshot per key. Prints a table; writes ``bench/results/feature_flow.json``.

``python -m bench.feature_flow [--stores 20 --skus 600 --days 30] [--keys 1000000] [--no-kafka]``
(Kafka figures need the broker of ``infra/kafka/kafka.sh start``; skipped if it does not answer.)
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main

from pipelines import connectors
from pipelines.dataflow import DEFAULT_BATCH_SIZE, build_flow

RESULTS = Path(__file__).resolve().parent / "results"
BOOTSTRAP = connectors.DEFAULT_BOOTSTRAP
TARGET_RATIO = 0.40
TARGET_BYTES_PER_KEY = 1024


# ----------------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    cpu, mhz = "unknown", None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("cpu MHz") and mhz is None:
                mhz = float(line.split(":", 1)[1])
    except OSError:
        pass
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram_gb = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    import bytewax

    return {
        "cpu": cpu,
        "cpu_mhz": mhz,
        "cores": os.cpu_count(),
        "ram_gb": ram_gb,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "bytewax": getattr(bytewax, "__version__", "0.21.1"),
        "kernel": platform.release(),
    }


# ------------------------------------------------------------------------------ the two flows


class _NullPartition(StatelessSinkPartition[Any]):
    def write_batch(self, items: list[Any]) -> None:
        pass


class NullSink(DynamicSink[Any]):
    """Discards everything: the benchmark measures the flows, not their sinks."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _NullPartition:
        return _NullPartition()


class _Minimal(msgspec.Struct):
    sku: str
    location: str
    quantity: int


_minimal = msgspec.json.Decoder(_Minimal)


def _key_and_quantity(item: Any) -> tuple[str, int] | None:
    payload = getattr(item, "value", item)
    try:
        msg = _minimal.decode(payload)
    except msgspec.DecodeError:
        return None  # malformed: dropped
    return (f"{msg.sku}|{msg.location}", msg.quantity)


class _RunningSum(StatefulBatchLogic[int, int, int]):
    def __init__(self, resume: int | None) -> None:
        self.total = resume or 0

    def on_batch(self, values: list[int]) -> tuple[list[int], bool]:
        self.total += sum(values)
        return [], self.RETAIN

    def on_eof(self) -> tuple[list[int], bool]:
        return [self.total], self.RETAIN

    def snapshot(self) -> int:
        return self.total


def trivial_flow(source: Source[Any]) -> Dataflow:
    """Minimal JSON decode, key sku|location, running sum, one output per key at the end."""
    flow = Dataflow("trivial_running_sum")
    raw = op.input("events", flow, source)
    keyed = op.filter_map("parse_min", raw, _key_and_quantity)
    sums = op.stateful_batch("sum", keyed, _RunningSum)
    op.output("out", sums, NullSink())
    return flow


def feature_flow(source: Source[Any]) -> Dataflow:
    """The production feature flow as ``shelfguard features`` runs it, with null sinks."""
    return build_flow(source, NullSink(), NullSink(), emit="final")


def best_rates(
    events: int, builds: dict[str, Callable[[], Dataflow]], repeat: int
) -> dict[str, float]:
    """Events per second of each flow's fastest of ``repeat`` runs, the flows' runs interleaved
    (A B A B ...): a stretch where the machine runs slower (a shared VM) then costs every flow
    alike instead of whichever flow happened to run in it, so their ratio holds."""
    best = dict.fromkeys(builds, float("inf"))
    for _ in range(repeat):
        for name, build in builds.items():
            flow = build()
            gc.collect()
            start = time.perf_counter()
            run_main(flow)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: events / seconds for name, seconds in best.items()}


def best_rate(events: int, build: Callable[[], Dataflow], repeat: int) -> float:
    """Events per second of the fastest of ``repeat`` runs (one worker, ``run_main``)."""
    best = float("inf")
    for _ in range(repeat):
        flow = build()
        gc.collect()
        start = time.perf_counter()
        run_main(flow)
        best = min(best, time.perf_counter() - start)
    return events / best


def core_compiled() -> bool:
    """True if this process runs the compiled ledger/feature core (``pipelines.native``)."""
    from pipelines.native import CORE, is_compiled

    return all(is_compiled(importlib.import_module(m)) for m in CORE)


def ledger_step() -> str:
    """Which implementation runs the flow's ledger step in this process."""
    from pipelines import native_book

    return "Rust" if native_book.book_class() is native_book.native_class() else "Python"


def subprocess_rate(events_path: Path, repeat: int, env: dict[str, str]) -> dict[str, Any]:
    """The feature flow's file rate in a fresh process with ``env`` added (e.g. the pure-Python
    core, or the Python ledger step): ``{"rate", "compiled", "ledger"}``."""
    done = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "bench.feature_flow",
            "--rate-of",
            str(events_path),
            "--repeat",
            str(repeat),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, **env},
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------------- Kafka


def kafka_answers(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5)
    except Exception:  # noqa: BLE001 - any failure means "no broker"
        return False
    return True


def publish(bootstrap: str, topic: str, lines: Iterable[bytes]) -> None:
    from pipelines.publish import ensure_topic, make_producer, publish_lines

    ensure_topic(bootstrap, topic)
    result = publish_lines(lines, make_producer(bootstrap), topic)
    if result.failed:
        raise RuntimeError(f"publishing the benchmark topic failed: {result.errors[:3]}")


def delete_topics(bootstrap: str, topics: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})  # keep it alive until the futures end
    for fut in admin.delete_topics(topics, operation_timeout=30).values():
        try:
            fut.result(timeout=30)
        except Exception:  # noqa: BLE001, S110 - best-effort clean-up
            pass


def stream_flow(bootstrap: str, events: str, features: str, dlq: str) -> Dataflow:
    from pipelines.settings import FlowSettings
    from pipelines.stream import build_stream_flow

    settings = FlowSettings(
        source="kafka",
        bootstrap=bootstrap,
        events_topic=events,
        features_topic=features,
        dlq_topic=dlq,
        tail=False,
    )
    return build_stream_flow(settings)


# ------------------------------------------------------------------------------- breakdown


def logic_costs(events_path: Path, repeat: int) -> dict[str, float]:
    """Microseconds per line of the flow's own Python steps, timed inside the feature flow.

    Runs :func:`feature_flow` over ``events_path`` with its two per-event steps timed where the
    engine calls them: ``parse_batch`` (``parse_event_us``, one call per source batch) and the
    ledger step's ``BookLogic.on_batch`` (``apply_us``: ``Book.apply_batch`` over the sku's
    items of a batch) and ``on_eof`` (``final_states_us``: every key's state pickled). Same
    wiring, GC thresholds and batches as the flow, because it is the flow. ``flow_us`` is that
    run's own total (the timers add ~0.1 µs an event), ``engine_and_wiring_us`` the rest of it:
    bytewax, reading the file, the steps after the ledger step, building the step logics. So the
    parts are non-negative and add up to ``flow_us``. The fastest of ``repeat`` runs is kept.
    """
    n = sum(1 for _ in events_path.open("rb"))
    best: dict[str, float] = {}
    for _ in range(repeat):
        seconds = _timed_flow_seconds(events_path)
        if not best or seconds["flow"] < best["flow"]:
            best = seconds
    costs = {f"{step}_us": s / n * 1e6 for step, s in best.items()}
    costs["engine_and_wiring_us"] = costs["flow_us"] - sum(
        costs[part] for part in ("parse_event_us", "apply_us", "final_states_us")
    )
    return costs


def _timed_flow_seconds(events_path: Path) -> dict[str, float]:
    """Seconds in each timed step of :func:`logic_costs` and in the whole flow, one run."""
    from unittest import mock

    from pipelines import dataflow

    clock = time.perf_counter
    seconds = {"parse_event": 0.0, "apply": 0.0, "final_states": 0.0}
    parse_batch = dataflow.parse_batch

    def timed_parse_batch(items: list[Any]) -> list[tuple[str, Any]]:
        start = clock()
        parsed = parse_batch(items)
        seconds["parse_event"] += clock() - start
        return parsed

    class TimedBookLogic(dataflow.BookLogic):
        def on_batch(self, values: list[Any]) -> tuple[list, bool]:
            start = clock()
            out = super().on_batch(values)
            seconds["apply"] += clock() - start
            return out

        def on_eof(self) -> tuple[list, bool]:
            start = clock()
            out = super().on_eof()
            seconds["final_states"] += clock() - start
            return out

    # the flow's own wiring (feature_streams looks both names up when it builds and runs)
    with (
        mock.patch.object(dataflow, "parse_batch", timed_parse_batch),
        mock.patch.object(dataflow, "BookLogic", TimedBookLogic),
    ):
        flow = feature_flow(connectors.file_source(events_path))
        gc.collect()
        start = clock()
        run_main(flow)
        seconds["flow"] = clock() - start
    return seconds


# ---------------------------------------------------------------------------------- memory

_T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _typical_events(key_no: int, profile: str) -> Iterable[Any]:
    """Events of one key: ``few`` = opening count, receipt, two sales, a reservation;
    ``steady`` = 30 days of a count, ~2 sales, and every few days a receipt/reservation."""
    from pipelines.events import EventType, InventoryEvent, Source

    sku, location = f"SKU-{key_no // 100:07d}", f"S{key_no % 100:03d}"
    plan: list[tuple[EventType, int, float]]
    if profile == "few":
        plan = [
            (EventType.CYCLE_COUNT, 12, 0.0),
            (EventType.RECEIPT, 6, 9.0),
            (EventType.SALE, 1, 11.5),
            (EventType.SALE, 2, 15.0),
            (EventType.RESERVATION, 1, 16.0),
        ]
    else:
        plan = [(EventType.CYCLE_COUNT, 40, 0.0)]
        for day in range(30):
            base = day * 24.0
            plan += [(EventType.SALE, 1, base + 10.0), (EventType.SALE, 2, base + 17.0)]
            if day % 7 == 3:
                plan.append((EventType.RECEIPT, 12, base + 6.0))
            if day % 3 == 1:
                plan += [
                    (EventType.RESERVATION, 1, base + 12.0),
                    (EventType.FULFILLMENT, 1, base + 14.0),
                ]
            if day % 10 == 9:
                plan.append((EventType.CYCLE_COUNT, 30, base + 20.0))
    for i, (etype, qty, hours) in enumerate(plan):
        yield InventoryEvent(
            event_id=f"ev{key_no:010d}-{i:06d}",
            event_type=etype,
            occurred_at=_T0 + timedelta(hours=hours),
            sku=sku,
            location=location,
            quantity=qty,
            source=Source.POS,
            unit_price=4.5 if etype is EventType.SALE else None,
        )


def _rss() -> int:
    """Resident set size of this process in bytes (Linux ``/proc/self/statm``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def memory_probe(kind: str, keys: int, profile: str) -> dict[str, Any]:
    """Run in a fresh process: RSS growth for ``keys`` keys of ``kind`` (``keystate``/``int``).

    ``keystate``: the flow's layout, one book per sku (100 locations each here) filled through
    its ``apply``: the flow's own implementation (:func:`pipelines.native_book.book_class`,
    the Rust book when built); ``int``: an ``int`` per ``sku|location`` string key, what a
    trivial keyed flow keeps.
    """
    from pipelines import native_book

    Book = native_book.book_class()  # noqa: N806 - a class

    gc.collect()
    before = _rss()
    states: dict[str, Any] = {}
    for n in range(keys):
        if kind == "int":
            states[f"SKU-{n // 100:07d}|S{n % 100:03d}"] = n
            continue
        events = list(_typical_events(n, profile))
        book = states.get(events[0].sku)
        if book is None:
            book = states[events[0].sku] = Book()
        for event in events:
            book.apply(event)
    gc.collect()
    after = _rss()
    out: dict[str, Any] = {"kind": kind, "keys": keys, "profile": profile}
    out["rss_bytes_per_key"] = (after - before) / keys
    if kind == "keystate":
        sample = list(states.values())[:: max(1, len(states) // 100)]
        # the ledger step's recovery snapshot: pickle(Book state) per sku, per location here
        sizes = [len(pickle.dumps(b.__getstate__())) / len(b.key_states()) for b in sample]
        out["pickled_bytes_per_key"] = sum(sizes) / len(sizes)
        out["ledger"] = ledger_step()
    return out


def run_probe(kind: str, keys: int, profile: str) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "bench.feature_flow",
            "--probe",
            kind,
            "--keys",
            str(keys),
            "--profile",
            profile,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ main


def simulate_world(directory: Path, stores: int, skus: int, days: int) -> Path:
    from pipelines.simulator import simulate

    events = directory / "events.jsonl"
    if not events.exists():
        simulate(directory, seed=2026, stores=stores, skus=skus, days=days, progress=False)
    return events


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=20)
    parser.add_argument("--skus", type=int, default=600)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys for the memory probe")
    parser.add_argument("--steady-keys", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per flow; best is kept")
    parser.add_argument("--world", type=Path, help="reuse/keep the simulated world here")
    parser.add_argument("--no-kafka", action="store_true")
    parser.add_argument("--probe", choices=["keystate", "int"], help=argparse.SUPPRESS)
    parser.add_argument("--profile", default="few", help=argparse.SUPPRESS)
    parser.add_argument("--rate-of", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else [])
    if args.rate_of:  # the feature flow's file rate in this process (pure-Python probe)
        n = sum(1 for _ in args.rate_of.open("rb"))
        rate = best_rate(n, lambda: feature_flow(connectors.file_source(args.rate_of)), args.repeat)
        print(json.dumps({"rate": rate, "compiled": core_compiled(), "ledger": ledger_step()}))
        return {"rate": rate}
    if args.probe:
        result = memory_probe(args.probe, args.keys, args.profile)
        print(json.dumps(result))
        return result

    with tempfile.TemporaryDirectory(prefix="bench-feature-flow-") as tmp:
        world_dir = args.world or Path(tmp) / "world"
        events_path = simulate_world(world_dir, args.stores, args.skus, args.days)
        lines = events_path.read_bytes().splitlines()
        n = len(lines)
        result: dict[str, Any] = {
            "machine": machine(),
            "world": {"stores": args.stores, "skus": args.skus, "days": args.days, "lines": n},
            "workers": 1,
            "batch_size": DEFAULT_BATCH_SIZE,
        }
        rates: dict[str, float] = best_rates(
            n,
            {
                "feature_file": lambda: feature_flow(connectors.file_source(events_path)),
                "trivial_file": lambda: trivial_flow(connectors.file_source(events_path)),
            },
            args.repeat,
        )
        # the same flow with the Python ledger step (compiled with mypyc), and all in pure
        # Python, each in a subprocess
        if ledger_step() == "Rust":
            probe = subprocess_rate(events_path, args.repeat, {"SHELFGUARD_NATIVE_BOOK": "0"})
            assert probe["ledger"] == "Python", probe
            rates["feature_file_no_rust"] = probe["rate"]
        if core_compiled():
            probe = subprocess_rate(events_path, args.repeat, {"SHELFGUARD_PURE_PYTHON": "1"})
            assert not probe["compiled"] and probe["ledger"] == "Python", probe
            rates["feature_file_pure_python"] = probe["rate"]
        result["core"] = "compiled (mypyc)" if core_compiled() else "pure Python"
        result["ledger_step"] = ledger_step()
        if not args.no_kafka and kafka_answers(BOOTSTRAP):
            tag = uuid.uuid4().hex[:10]
            topics = [f"bench.events.{tag}", f"bench.features.{tag}", f"bench.dlq.{tag}"]
            try:
                publish(BOOTSTRAP, topics[0], lines)
                source = connectors.kafka_source
                rates.update(
                    best_rates(
                        n,
                        {
                            "feature_kafka": lambda: feature_flow(
                                source(BOOTSTRAP, topics[0], tail=False)
                            ),
                            "trivial_kafka": lambda: trivial_flow(
                                source(BOOTSTRAP, topics[0], tail=False)
                            ),
                        },
                        args.repeat,
                    )
                )
                rates["stream_updates_kafka"] = best_rate(
                    n, lambda: stream_flow(BOOTSTRAP, *topics), 1
                )
            finally:
                delete_topics(BOOTSTRAP, topics)
        result["events_per_s"] = {k: round(v) for k, v in rates.items()}
        ratios = {"file": rates["feature_file"] / rates["trivial_file"]}
        if "feature_file_pure_python" in rates:
            result["compiled_vs_pure_python_file"] = round(
                rates["feature_file"] / rates["feature_file_pure_python"], 2
            )
        if "feature_file_no_rust" in rates:
            result["rust_vs_no_rust_file"] = round(
                rates["feature_file"] / rates["feature_file_no_rust"], 2
            )
        if "feature_kafka" in rates:
            ratios["kafka"] = rates["feature_kafka"] / rates["trivial_kafka"]
        result["feature_vs_trivial"] = {k: round(v, 3) for k, v in ratios.items()}
        result["target_ratio"] = TARGET_RATIO

        costs = logic_costs(events_path, args.repeat)
        costs["trivial_flow_us"] = 1e6 / rates["trivial_file"]
        result["us_per_event_file"] = {k: round(v, 2) for k, v in costs.items()}

    few = run_probe("keystate", args.keys, "few")
    base = run_probe("int", args.keys, "few")
    steady = run_probe("keystate", args.steady_keys, "steady")
    steady_base = run_probe("int", args.steady_keys, "few")
    result["memory"] = {
        "keys": args.keys,
        "keystate_few_events_rss_bytes_per_key": round(few["rss_bytes_per_key"]),
        "int_state_rss_bytes_per_key": round(base["rss_bytes_per_key"]),
        "keystate_beyond_int_bytes_per_key": round(
            few["rss_bytes_per_key"] - base["rss_bytes_per_key"]
        ),
        "pickled_snapshot_bytes_per_key": round(few["pickled_bytes_per_key"]),
        "steady_keys": args.steady_keys,
        "keystate_steady_30d_beyond_int_bytes_per_key": round(
            steady["rss_bytes_per_key"] - steady_base["rss_bytes_per_key"]
        ),
        "pickled_snapshot_steady_30d_bytes_per_key": round(steady["pickled_bytes_per_key"]),
        "target_bytes_per_key": TARGET_BYTES_PER_KEY,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "feature_flow.json").write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    return result


def print_table(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(f"machine: {m['cpu']} @ {m['cpu_mhz']} MHz, {m['cores']} cores, {m['ram_gb']} GB RAM, "
          f"{m['python']}, bytewax {m['bytewax']}")  # fmt: skip
    w = result["world"]
    print(f"events: {w['lines']:,} lines ({w['stores']} stores x {w['skus']} SKUs x "
          f"{w['days']} days), 1 worker")  # fmt: skip
    print(f"{'flow':<34}{'events/s':>12}")
    for name, value in result["events_per_s"].items():
        print(f"{name:<34}{value:>12,}")
    for source, ratio in result["feature_vs_trivial"].items():
        verdict = "meets" if ratio >= result["target_ratio"] else "MISSES"
        print(f"feature/trivial ({source}): {ratio:.1%} - {verdict} the "
              f"{result['target_ratio']:.0%} target")  # fmt: skip
    if "compiled_vs_pure_python_file" in result:
        print(
            f"core: {result['core']}; feature flow (file) "
            f"{result['compiled_vs_pure_python_file']}x the same flow on the pure-Python core"
        )
    if "rust_vs_no_rust_file" in result:
        print(
            f"parse fast path + ledger step: {result['ledger_step']}; feature flow (file) "
            f"{result['rust_vs_no_rust_file']}x the same flow without the Rust extension"
        )
    print(
        "us/event (file): " + ", ".join(f"{k}={v}" for k, v in result["us_per_event_file"].items())
    )
    mem = result["memory"]
    beyond = mem["keystate_beyond_int_bytes_per_key"]
    verdict = "meets" if beyond <= mem["target_bytes_per_key"] else "MISSES"
    print(f"memory at {mem['keys']:,} keys (few events each): KeyState "
          f"{mem['keystate_few_events_rss_bytes_per_key']} B/key, int state "
          f"{mem['int_state_rss_bytes_per_key']} B/key, KeyState beyond int {beyond} B/key - "
          f"{verdict} the {mem['target_bytes_per_key']} B target; pickled snapshot "
          f"{mem['pickled_snapshot_bytes_per_key']} B/key")  # fmt: skip
    steady = mem["keystate_steady_30d_beyond_int_bytes_per_key"]
    verdict = "meets" if steady <= mem["target_bytes_per_key"] else "MISSES"
    print(f"steady state (30 days of activity, {mem['steady_keys']:,} keys): "
          f"{steady} B/key beyond int - {verdict} the target; pickled "
          f"{mem['pickled_snapshot_steady_30d_bytes_per_key']} B/key")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])


def summary(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The figures of this benchmark for ``bench.run_all``'s final table."""
    rates, ratio = result["events_per_s"], result["feature_vs_trivial"]
    rows = [
        (
            "feature flow events/s (file, 1 worker)",
            f"{rates['feature_file']:,} = {ratio['file']:.1%} of a trivial flow "
            f"({rates['trivial_file']:,})",
        )
    ]
    if "compiled_vs_pure_python_file" in result:
        rows.append(
            (
                "compiled core (mypyc) vs pure Python",
                f"feature flow from file {result['compiled_vs_pure_python_file']}x "
                f"({rates['feature_file']:,} vs {rates['feature_file_pure_python']:,} events/s)",
            )
        )
    if "rust_vs_no_rust_file" in result:
        rows.append(
            (
                "Rust parse + ledger step vs Python (mypyc core)",
                f"feature flow from file {result['rust_vs_no_rust_file']}x "
                f"({rates['feature_file']:,} vs {rates['feature_file_no_rust']:,} events/s)",
            )
        )
    if "kafka" in ratio:
        rows.append(
            (
                "feature flow events/s (Kafka, 1 worker)",
                f"{rates['feature_kafka']:,} = {ratio['kafka']:.1%} of a trivial flow "
                f"({rates['trivial_kafka']:,}); streaming to a topic "
                f"{rates['stream_updates_kafka']:,}",
            )
        )
    mem = result["memory"]
    rows.append(
        (
            "memory per key",
            f"{mem['keystate_beyond_int_bytes_per_key']:,} B (few events), "
            f"{mem['keystate_steady_30d_beyond_int_bytes_per_key']:,} B (30 days of activity); "
            f"snapshot {mem['pickled_snapshot_bytes_per_key']:,} / "
            f"{mem['pickled_snapshot_steady_30d_bytes_per_key']:,} B",
        )
    )
    return rows
