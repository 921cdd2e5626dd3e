"""The figures a fault test shows: printed, asserted by the test, and collected for the README.

Every fault test calls :func:`report` with a flat dict of figures (what was sent, what arrived,
what was counted twice, how long the outage and the recovery took). They are printed (visible
with ``pytest -rP`` or ``-s``) and, when ``SHELFGUARD_CHAOS_REPORT`` names a JSON file (``make
chaos`` sets ``bench/results/chaos.json``), merged into it under the test's name, together with
the time and the machine, so ``python -m bench.chaos_report`` can print the table.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ENV = "SHELFGUARD_CHAOS_REPORT"


def machine() -> dict[str, Any]:
    cpu, ram_gb = "unknown", None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram_gb = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": ram_gb,
        "python": platform.python_version(),
    }


def report(name: str, fault: str, figures: dict[str, Any]) -> None:
    """Print ``figures`` as a two-column table and record them (see the module docstring)."""
    width = max(len(k) for k in figures)
    print(f"\n[chaos] {name}: {fault}")
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value}")
    target = os.environ.get(ENV)
    if not target:
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:  # locked: tests of parallel sessions merge, not overwrite
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        try:
            data: dict[str, Any] = json.loads(fh.read() or "{}")
        except ValueError:
            data = {}
        data.setdefault("tests", {})[name] = {
            "fault": fault,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "figures": figures,
        }
        data["machine"] = machine()
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(data, indent=2, default=str) + "\n")
