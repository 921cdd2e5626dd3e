"""The compiled ledger/feature core: the same Python source, compiled to C with mypyc.

``pipelines.keys``, ``pipelines.ledger`` and ``pipelines.features`` are plain, typed Python and
stay the one source of truth: the stream, the training-set builder and the tests run exactly
this code. mypyc turns the modules into C extensions (native classes, C attribute access) that
sit next to the sources and shadow them on import; they run the feature flow's per-event work
about twice as fast. Nothing else changes: same classes, same snapshots, same pickles.

- ``python -c 'import pipelines.native as n; n.main(["build"])'`` compiles them (``make
  install`` does; needs gcc and mypy, both install-time only) and records each source's
  SHA-256 in ``_core.json``.
- On import, ``pipelines/__init__`` checks those digests. A source edited since the build (or
  ``SHELFGUARD_PURE_PYTHON=1``) makes Python import the ``.py`` instead, with a warning for the
  stale case: a compiled module never runs code other than its source.
- ``... n.main(["status"])`` says which of the two (compiled or source) a process would run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: The modules compiled, in one mypyc group (native calls between them).
CORE: tuple[str, ...] = ("pipelines.keys", "pipelines.ledger", "pipelines.features")
#: The group's shared library is ``pipelines/_core__mypyc*.so``: inside the package, so it is
#: found wherever the package is.
GROUP = "pipelines._core"
MANIFEST = PACKAGE_DIR / "_core.json"
PURE_ENV = "SHELFGUARD_PURE_PYTHON"


def source_path(module: str) -> Path:
    return PACKAGE_DIR / f"{module.rsplit('.', 1)[1]}.py"


def source_digest(module: str) -> str:
    return hashlib.sha256(source_path(module).read_bytes()).hexdigest()


def compiled_paths(module: str) -> list[Path]:
    """The extension files of ``module`` present next to its source (none if not built)."""
    stem = module.rsplit(".", 1)[1]
    return sorted(PACKAGE_DIR.glob(f"{stem}.*.so")) + sorted(PACKAGE_DIR.glob(f"{stem}.*.pyd"))


def stale_modules() -> list[str]:
    """Modules whose extension exists but whose source changed since it was built."""
    try:
        recorded = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        recorded = {}
    return [m for m in CORE if compiled_paths(m) and recorded.get(m) != source_digest(m)]


def pure_requested() -> bool:
    """True if ``SHELFGUARD_PURE_PYTHON`` asks for the sources whatever is built."""
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def modules_to_run_from_source() -> list[str]:
    """The core modules Python must import from their ``.py`` (pure mode, or stale builds).

    All or none: the modules are one mypyc group, and a compiled ``features`` calls the group's
    own compiled ``ledger`` classes, so one stale module sends the whole group to the sources.
    """
    built = [m for m in CORE if compiled_paths(m)]
    if pure_requested() or stale_modules():
        return built
    return []


def is_compiled(module: object) -> bool:
    """True if an imported module object is a compiled extension."""
    return not str(getattr(module, "__file__", "")).endswith(".py")


def clean() -> None:
    for module in CORE:
        for path in compiled_paths(module):
            path.unlink()
    for path in PACKAGE_DIR.glob("_core__mypyc.*"):
        path.unlink()
    MANIFEST.unlink(missing_ok=True)


def build(opt_level: str = "3") -> list[Path]:
    """Compile :data:`CORE` in place with mypyc; returns the extension files written."""
    from mypyc.build import mypycify
    from setuptools import Distribution

    repo = PACKAGE_DIR.parent
    sources = [str(source_path(m).relative_to(repo)) for m in CORE]
    digests = {m: source_digest(m) for m in CORE}
    cwd = Path.cwd()
    os.chdir(repo)  # mypyc names modules by their path relative to the working directory
    try:
        with tempfile.TemporaryDirectory(prefix="shelfguard-mypyc-") as tmp:
            extensions = mypycify(
                sources, opt_level=opt_level, group_name=GROUP, target_dir=str(Path(tmp, "c"))
            )
            dist = Distribution({"name": "shelfguard-core", "ext_modules": extensions})
            cmd = dist.get_command_obj("build_ext")
            cmd.inplace = True
            cmd.build_temp = str(Path(tmp, "o"))
            cmd.build_lib = str(Path(tmp, "lib"))
            cmd.ensure_finalized()
            cmd.run()
    finally:
        os.chdir(cwd)
    MANIFEST.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
    return [p for m in CORE for p in compiled_paths(m)]


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    if command == "build":
        for path in build():
            print(f"compiled {path.relative_to(PACKAGE_DIR.parent)}")
        return 0
    if command == "clean":
        clean()
        return 0
    if command == "status":
        import importlib

        for name in CORE:
            module = importlib.import_module(name)
            kind = "compiled" if is_compiled(module) else "pure Python"
            print(f"{name}: {kind} ({module.__file__})")
        return 0
    print("usage: main(['build' | 'clean' | 'status'])", file=sys.stderr)
    return 2
