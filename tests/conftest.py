from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO.parent / "shared" / "conformance"


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    """The shared hand-written conformance cases (vendored copy if ../shared is absent)."""
    for candidate in (CONFORMANCE, REPO / "tests" / "data" / "conformance"):
        if (candidate / "events.jsonl").exists():
            return candidate
    raise FileNotFoundError("conformance cases not found in ../shared/conformance or tests/data")
