"""The fault tests' figures, as the last ``make chaos`` recorded them.

``make chaos`` runs ``pytest -m chaos`` with ``SHELFGUARD_CHAOS_REPORT=bench/results/chaos.json``;
each fault test (``tests/chaos``, and the SIGKILL / flood / duplicate-storm tests in
``tests/integration``) merges its figures into that file (see ``tests/chaos/figures.py``). This
prints them; it runs nothing itself. ``python -m bench.chaos_report [--markdown]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REPORT = RESULTS / "chaos.json"
ORDER = (
    "sigkill_dataflow",
    "kafka_broker_restart",
    "postgres_restart",
    "malformed_flood",
    "duplicate_storm",
    "webhook_receiver_down",
)


def load(path: Path = REPORT) -> dict[str, Any]:
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def ordered(tests: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    names = [n for n in ORDER if n in tests] + sorted(set(tests) - set(ORDER))
    return [(n, tests[n]) for n in names]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="one Markdown table per fault")
    args = parser.parse_args(argv if argv is not None else [])
    data = load()
    if not data:
        print(f"no fault-test figures yet ({REPORT} is missing): run `make chaos`")
        return {}
    m = data["machine"]
    print(f"fault tests, machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM")
    for name, test in ordered(data["tests"]):
        if args.markdown:
            print(f"\n**{name}** — {test['fault']} ({test['at']})\n\n| figure | value |\n|---|---|")
            for key, value in test["figures"].items():
                print(f"| {key.strip()} | {value} |")
        else:
            print(f"\n{name}: {test['fault']} ({test['at']})")
            width = max(len(k) for k in test["figures"])
            for key, value in test["figures"].items():
                print(f"  {key:<{width}}  {value}")
    return data


def summary(data: dict[str, Any]) -> list[tuple[str, str]]:
    """One line per fault test: when it last ran (the figures are in chaos.json)."""
    return [
        (f"fault test {name} (last `make chaos`)", f"{test['at']}: {test['fault']}")
        for name, test in ordered(data.get("tests", {}))
    ]


if __name__ == "__main__":
    main(sys.argv[1:])
