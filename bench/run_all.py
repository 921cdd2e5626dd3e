"""Run every benchmark module in ``bench/``: ``python -m bench.run_all`` (``make bench``).

A benchmark module is any ``bench/<name>.py`` (not ``run_all``, ``__init__`` or ``_private``)
with a ``main()`` that prints its table, writes ``bench/results/<name>.json`` and returns its
results. Modules run one after another in name order, each in this process; one that fails is
reported and the others still run. Exit status 1 if any failed.
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


def main() -> int:
    failed = []
    for name in bench_modules():
        module = importlib.import_module(f"bench.{name}")
        run = getattr(module, "main", None)
        if run is None:
            print(f"\n=== bench.{name}: skipped (no main())", flush=True)
            continue
        print(f"\n=== bench.{name} ===", flush=True)
        started = time.perf_counter()
        try:
            run()
        except Exception:  # noqa: BLE001 - report and carry on with the other benchmarks
            traceback.print_exc()
            failed.append(name)
        print(f"--- bench.{name}: {time.perf_counter() - started:.0f} s", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
