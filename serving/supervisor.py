"""Child processes in their own process groups, and ending every one of those groups.

Each child leads a new session (``start_new_session``), so a terminal's Ctrl-C reaches only the
parent, which then ends the children group by group: everything a child started (a server's
workers, say) goes with it. On Linux a child also gets SIGTERM when the parent dies
(``PR_SET_PDEATHSIG``), so a killed parent does not leave its children running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, from /proc (Linux)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


@dataclass
class Child:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pgid(self) -> int:
        return self.popen.pid  # start_new_session: the child leads its own group

    def tail(self, lines: int = 25) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Starts children in their own process groups; :meth:`stop` ends every group."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as fh:
            popen = subprocess.Popen(  # noqa: S603 - our own executables
                argv,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - before any thread of ours starts
            )
        child = Child(name, popen, log)
        self.children.append(child)
        return child

    def exited(self) -> Child | None:
        return next((c for c in self.children if c.popen.poll() is not None), None)

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGINT to every group (newest first), then SIGTERM, then SIGKILL; wait until empty."""
        for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            alive = [c for c in reversed(self.children) if group_members(c.pgid)]
            if not alive:
                break
            for child in alive:
                try:
                    os.killpg(child.pgid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and any(group_members(c.pgid) for c in alive):
                for child in alive:
                    if child.popen.poll() is None:
                        try:
                            child.popen.wait(timeout=0.1)
                        except subprocess.TimeoutExpired:
                            pass
                time.sleep(0.05)
        for child in self.children:
            if child.popen.poll() is None:
                child.popen.wait(timeout=5)

    def leftovers(self) -> dict[str, list[int]]:
        """Processes still alive in the children's groups (empty after a clean :meth:`stop`)."""
        found = {c.name: group_members(c.pgid) for c in self.children}
        return {name: pids for name, pids in found.items() if pids}
