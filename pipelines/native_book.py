"""The feature dataflow's ledger step in Rust: :class:`pipelines.features.Book`, a second time.

The dataflow spends most of its per-event time in the ledger step (dedupe, the transition
table, the activity accumulators, transfer matching); compiled with mypyc it still cost ~5 µs an
event, more than the engine and the parsing together. ``pipelines/rust_book`` (PyO3) implements
the same :class:`~pipelines.features.Book` in Rust, for that step only. What stays as it was:

- The Python classes are the specification and the only implementation the replay, the
  training-set builder, ``score`` and the tests' reference run. The Rust book takes every rule it
  can from them at import (:func:`configuration`: the transition table, move reasons, day slots,
  constants, feature names), and must agree with them bit for bit; the test suite compares the
  two on simulated worlds, the conformance cases and randomised streams
  (``tests/pipelines/test_native_book.py``).
- Snapshots: :meth:`NativeBook.__getstate__` is :meth:`Book.__getstate__`'s layout and
  ``NativeBook.from_state`` reads either, so a recovery store resumes in either implementation;
  final states leave the flow as pickled Python :class:`~pipelines.features.KeyState` objects.

Build: ``python -m pipelines.native_book build`` (``make install`` runs it; needs cargo and
crates.io, both install-time only). It records the digest of the crate's sources; a stale or
missing build, or ``SHELFGUARD_NATIVE_BOOK=0`` / ``SHELFGUARD_PURE_PYTHON=1``, makes
:func:`book_class` return the Python :class:`Book`. ``... status`` says which one runs.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
CRATE = PACKAGE_DIR / "rust_book"
CRATE_SOURCES = ("Cargo.toml", "Cargo.lock", "src/lib.rs", "src/parse.rs")
MODULE = "pipelines._native_book"
MANIFEST = PACKAGE_DIR / "_native_book.json"
ENV = "SHELFGUARD_NATIVE_BOOK"


def extension_path() -> Path:
    return PACKAGE_DIR / f"_native_book{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}"


def crate_digest() -> str:
    digest = hashlib.sha256()
    for name in CRATE_SOURCES:
        path = CRATE / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()


def built() -> bool:
    """True if the extension exists and was built from the crate's current sources."""
    try:
        recorded = json.loads(MANIFEST.read_text()).get("sha256")
    except (OSError, ValueError):
        return False
    return extension_path().exists() and recorded == crate_digest()


def disabled() -> bool:
    return os.environ.get(ENV, "") == "0" or os.environ.get("SHELFGUARD_PURE_PYTHON", "") not in (
        "",
        "0",
    )


def configuration() -> dict[str, Any]:
    """Every rule and constant the Rust book takes from the Python modules."""
    from pipelines import features, keys, ledger
    from pipelines.events import MAX_ABS_QUANTITY, EventType, InventoryEvent, Source

    return {
        "event_types": list(EventType),
        "sources": list(Source),
        "event_class": InventoryEvent,
        "max_abs_quantity": MAX_ABS_QUANTITY,
        "plans": dict(ledger._PLANS),
        "move_plans": dict(ledger._MOVE_PLANS),
        "pending_return": ledger._PENDING_RETURN,
        "return_to_shelf_reasons": list(ledger.RETURN_TO_SHELF_REASONS),
        "sale_types": list(features._SALE_TYPES),
        "receipt_types": list(features._RECEIPT_TYPES),
        "slot_of": dict(features._SLOT_OF),
        "slots": features._SLOTS,
        "slot_sales": features._SALES,
        "slot_returns": features._RETURNS,
        "slot_adj": features._ADJ,
        "slot_pick_short": features._PICK_SHORT,
        "slot_pick_ok": features._PICK_OK,
        "day_s": ledger.DAY_S,
        "hour_s": features.HOUR_S,
        "dedupe_horizon_s": ledger.DEDUPE_HORIZON_S,
        "count_lateness_s": ledger.COUNT_LATENESS_S,
        "blob_max_chars": ledger.BLOB_MAX_CHARS,
        "rate_tau_days": features.RATE_TAU_DAYS,
        "window_days": features.WINDOW_DAYS,
        "allowed_lateness_s": features.ALLOWED_LATENESS_S,
        "min_warmup": features.MIN_WARMUP,
        "max_days_of_cover": features.MAX_DAYS_OF_COVER,
        "transfer_horizon_s": features.TRANSFER_HORIZON_S,
        "version": features.BOOK_STATE_VERSION,
        "row": ["sku", "location", *features.FEATURE_NAMES],
        "state_key": keys.state_key,
        "escape_prefix": keys._ESCAPED_KEY,
    }


_loaded: Any = None  # the configured extension module, False if not to be used


def _module() -> Any:
    global _loaded
    if _loaded is None:
        if disabled() or not built():
            _loaded = False
        else:
            _loaded = importlib.import_module(MODULE)
            _loaded.configure(configuration())
    return _loaded or None


def native_class() -> Any:
    """The configured ``NativeBook`` class, or None (not built, stale, or disabled)."""
    module = _module()
    return None if module is None else module.NativeBook


def parse_batch_function() -> Any:
    """The Rust ``parse_batch(items, slow)`` (see ``pipelines.dataflow.parse_batch``), or None."""
    module = _module()
    return None if module is None else module.parse_batch


def book_class() -> Any:
    """The :class:`Book` implementation the dataflow runs: native if available."""
    native = native_class()
    if native is not None:
        return native
    from pipelines.features import Book

    return Book


def build() -> Path:
    """``cargo build --release`` the crate and install the extension next to this module."""
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    target = CRATE / "target"
    env = {**os.environ, "PYO3_PYTHON": sys.executable, "CARGO_TARGET_DIR": str(target)}
    subprocess.run(  # noqa: S603 - cargo, on our own crate
        [cargo, "build", "--release", "--locked", "--quiet"], cwd=CRATE, env=env, check=True
    )
    out = extension_path()
    tmp = out.with_suffix(".tmp")
    shutil.copyfile(target / "release" / "lib_native_book.so", tmp)
    tmp.replace(out)  # atomic: a running process keeps its mapped copy
    MANIFEST.write_text(json.dumps({"sha256": crate_digest()}, indent=1) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "status"
    if command == "build":
        print(f"built {build().relative_to(PACKAGE_DIR.parent)}")
        return 0
    if command == "status":
        cls = book_class()
        where = "Rust (pipelines._native_book)" if cls is native_class() else "Python (Book)"
        print(f"feature dataflow ledger step: {where}; extension built: {built()}")
        return 0
    print("usage: python -m pipelines.native_book build | status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
