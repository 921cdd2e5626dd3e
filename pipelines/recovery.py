"""Bytewax recovery directory set-up.

The number of recovery partitions is fixed for good when the directory is created: bytewax
spreads state keys over partitions by hash, and a different count on resume is refused
(``InconsistentPartitionsError``). We create ``RECOVERY_PARTITIONS`` = 4: at least the number of
workers we expect to run (1–4 on this class of machine), since each worker writes snapshots to
the partitions it is assigned, and few enough that each SQLite file stays large and sequential.
To scale past 4 workers, start a new recovery directory from a fresh consumer position.
"""

from __future__ import annotations

from pathlib import Path

RECOVERY_PARTITIONS = 4


def ensure_recovery_dir(directory: Path, partitions: int = RECOVERY_PARTITIONS) -> None:
    """Create ``directory`` with its partitions once; leave an existing one untouched."""
    from bytewax.recovery import init_db_dir

    directory.mkdir(parents=True, exist_ok=True)
    if not any(directory.glob("part-*.sqlite3")):
        init_db_dir(directory, partitions)
