"""Simulator throughput: lines of ``events.jsonl`` written per second, against a trivial writer.

``pipelines.simulator.simulate`` (truth written daily, as ``shelfguard simulate`` does) at two
retailer sizes, and in the same process a trivial baseline that writes the same number of JSON
lines of the same shape (``json.dumps`` of an event-like dict per line, buffered file write):
the ratio says how much of a plain JSON writer's speed the simulation keeps while it also
simulates demand, shelves, replenishment, orders and errors.

``python -m bench.simulator [--sizes 50x500x30,180x500x30]`` writes
``bench/results/simulator.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.feature_flow import machine

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SIZES = ((50, 500, 30), (180, 500, 30))
EVENT_TYPES = ("sale", "receipt", "reservation", "fulfillment", "cycle_count", "return")


def trivial_writer(path: Path, lines: int, encoder: str = "json") -> float:
    """Seconds to write ``lines`` event-shaped JSON lines with ``json.dumps`` (``encoder=
    "json"``) or ``msgspec.json.encode`` (``"msgspec"``)."""
    import msgspec

    encode = msgspec.json.Encoder().encode
    start = time.perf_counter()
    with path.open("wb", buffering=1 << 20) as fh:
        for i in range(lines):
            event = {
                "event_id": f"ev00000000-{i:010d}",
                "event_type": EVENT_TYPES[i % len(EVENT_TYPES)],
                "occurred_at": f"2026-03-{2 + i % 27:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
                "sku": f"SKU-{i % 500:05d}",
                "location": f"S{i % 180:03d}",
                "quantity": i % 7,
                "source": "pos",
                "published_at": f"2026-03-{2 + i % 27:02d}T{i % 24:02d}:{i % 60:02d}:30Z",
            }
            if encoder == "json":
                fh.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")
            else:
                fh.write(encode(event) + b"\n")
    return time.perf_counter() - start


def run_size(stores: int, skus: int, days: int, workdir: Path) -> dict[str, Any]:
    from pipelines.simulator import simulate

    out = workdir / f"sim-{stores}"
    start = time.perf_counter()
    summary = simulate(out, seed=2026, stores=stores, skus=skus, days=days, progress=False)
    sim_s = time.perf_counter() - start
    size_mb = (out / "events.jsonl").stat().st_size / 1e6
    shutil.rmtree(out)
    trivial = workdir / "trivial.jsonl"
    trivial_s = trivial_writer(trivial, summary.lines_written, "json")
    msgspec_s = trivial_writer(trivial, summary.lines_written, "msgspec")
    trivial.unlink()
    sim_rate = summary.lines_written / sim_s
    trivial_rate = summary.lines_written / trivial_s
    msgspec_rate = summary.lines_written / msgspec_s
    return {
        "stores": stores,
        "skus": skus,
        "days": days,
        "keys": stores * skus,
        "lines": summary.lines_written,
        "events_mb": round(size_mb, 1),
        "simulate_s": round(sim_s, 2),
        "simulator_events_per_s": round(sim_rate),
        "trivial_json_lines_per_s": round(trivial_rate),
        "simulator_vs_trivial": round(sim_rate / trivial_rate, 3),
        "trivial_msgspec_lines_per_s": round(msgspec_rate),
        "simulator_vs_trivial_msgspec": round(sim_rate / msgspec_rate, 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default=",".join("x".join(map(str, s)) for s in DEFAULT_SIZES),
        help="comma-separated STORESxSKUSxDAYS",
    )
    args = parser.parse_args(argv if argv is not None else [])
    sizes = [tuple(int(n) for n in size.split("x")) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-simulator-") as tmp:
        runs = [run_size(*size, Path(tmp)) for size in sizes]  # type: ignore[misc]
    result = {"machine": machine(), "truth": "daily", "runs": runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "simulator.json").write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    return result


def print_table(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, {m['python']}")
    print("trivial = the same number of event-shaped JSON lines written in this process")
    print(f"{'stores x skus x days':<22}{'lines':>11}{'sim s':>8}{'sim ev/s':>11}"
          f"{'json.dumps/s':>14}{'ratio':>7}{'msgspec/s':>12}{'ratio':>7}")  # fmt: skip
    for r in result["runs"]:
        print(
            f"{r['stores']:>4} x {r['skus']} x {r['days']:<9}{r['lines']:>11,}{r['simulate_s']:>8}"
            f"{r['simulator_events_per_s']:>11,}{r['trivial_json_lines_per_s']:>14,}"
            f"{r['simulator_vs_trivial']:>7.2f}{r['trivial_msgspec_lines_per_s']:>12,}"
            f"{r['simulator_vs_trivial_msgspec']:>7.2f}"
        )


def summary(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (
            f"simulator events/s ({r['stores']} stores x {r['skus']} SKUs x {r['days']} d)",
            f"{r['simulator_events_per_s']:,}/s = {r['simulator_vs_trivial']:.2f}x json.dumps "
            f"lines, {r['simulator_vs_trivial_msgspec']:.2f}x msgspec lines",
        )
        for r in result["runs"]
    ]


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
