"""shelfguard pipelines.

The ledger/feature core (``pipelines.ledger``, ``pipelines.features``) may be compiled in place
(see :mod:`pipelines.native`). Before either is imported, this checks that a compiled build
matches its source; where it does not (or ``SHELFGUARD_PURE_PYTHON=1``), Python imports the
``.py`` instead.
"""

from __future__ import annotations

import sys
import warnings
from importlib.machinery import ModuleSpec
from importlib.util import spec_from_file_location

from pipelines import native


class _SourceFirst:
    """A meta-path finder that loads the given modules from their ``.py`` sources."""

    def __init__(self, modules: list[str]) -> None:
        self.modules = frozenset(modules)

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> ModuleSpec | None:
        if fullname not in self.modules:
            return None
        return spec_from_file_location(fullname, native.source_path(fullname))


def _guard() -> None:
    from_source = native.modules_to_run_from_source()
    if not from_source:
        return
    if not native.pure_requested():  # then a build is stale
        warnings.warn(
            f"compiled {', '.join(native.stale_modules())} out of date with the source: running "
            "the sources of the whole compiled core; "
            "rebuild with `make install`",
            RuntimeWarning,
            stacklevel=2,
        )
    sys.meta_path.insert(0, _SourceFirst(from_source))


_guard()
