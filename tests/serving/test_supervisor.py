"""Child process groups end completely, grandchildren included, even when they ignore Ctrl-C."""

from __future__ import annotations

import time

from serving.supervisor import Supervisor, group_members


def test_stop_ends_every_group_escalating_past_an_ignored_sigint(tmp_path) -> None:
    supervisor = Supervisor(tmp_path / "logs")
    polite = supervisor.start("polite", ["sh", "-c", "sleep 60 & sleep 60 & wait"])
    # SIG_IGN is inherited across exec: the shell and both of its sleeps ignore SIGINT
    stubborn = supervisor.start("stubborn", ["sh", "-c", "trap '' INT; sleep 60 & sleep 60 & wait"])
    deadline = time.monotonic() + 10
    while min(len(group_members(c.pgid)) for c in (polite, stubborn)) < 3:
        assert time.monotonic() < deadline, "children did not start"
        time.sleep(0.05)
    assert supervisor.exited() is None

    started = time.monotonic()
    supervisor.stop(grace_s=1.0)
    assert supervisor.leftovers() == {}
    assert group_members(polite.pgid) == group_members(stubborn.pgid) == []
    assert polite.popen.returncode is not None and stubborn.popen.returncode is not None
    assert time.monotonic() - started < 8  # SIGINT grace 1 s, then SIGTERM
