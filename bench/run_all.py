"""Run every benchmark module in ``bench/``: ``python -m bench.run_all`` (``make bench``).

A benchmark module is any ``bench/<name>.py`` (not ``run_all``, ``__init__`` or ``_private``)
with a ``main()`` that prints its table, writes ``bench/results/<name>.json`` and returns its
results; its optional ``summary(result)`` gives (figure, value) rows for the final table, which
names the machine. Modules run one after another in name order, each in this process; one that
fails is reported and the others still run. Exit status 1 if any failed.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def bench_modules() -> list[str]:
    return sorted(
        path.stem
        for path in BENCH.glob("*.py")
        if path.stem not in {"__init__", "run_all"} and not path.stem.startswith("_")
    )


def machine_line() -> str:
    from bench.feature_flow import machine

    m = machine()
    load = ""
    try:
        load = ", load average " + Path("/proc/loadavg").read_text().split(" ", 1)[0]
    except OSError:
        pass
    return (
        f"{m['cpu']} @ {m['cpu_mhz']} MHz, {m['cores']} cores, {m['ram_gb']} GB RAM, "
        f"{m['python']}, kernel {m['kernel']}{load}"
    )


def print_summary(rows: list[tuple[str, str, str]], failed: list[str]) -> None:
    print("\n=== summary ===")
    print(f"machine: {machine_line()}")
    if not rows:
        return
    width = max(len(figure) for _name, figure, _value in rows)
    for _name, figure, value in rows:
        print(f"{figure:<{width}}  {value}")
    for name in failed:
        print(f"{'bench.' + name:<{width}}  FAILED (see above)")


def main() -> int:
    failed = []
    rows: list[tuple[str, str, str]] = []
    for name in bench_modules():
        module = importlib.import_module(f"bench.{name}")
        run = getattr(module, "main", None)
        if run is None:
            print(f"\n=== bench.{name}: skipped (no main())", flush=True)
            continue
        print(f"\n=== bench.{name} ===", flush=True)
        started = time.perf_counter()
        try:
            result = run()
            summarise = getattr(module, "summary", None)
            if summarise is not None and result:
                rows += [(name, figure, value) for figure, value in summarise(result)]
        except Exception:  # noqa: BLE001 - report and carry on with the other benchmarks
            traceback.print_exc()
            failed.append(name)
        print(f"--- bench.{name}: {time.perf_counter() - started:.0f} s", flush=True)
    print_summary(rows, failed)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
