"""The outbox relay lease: two relays on one database (``serve`` and ``alerts consume``) never
publish at the same time; a lease left by a dead relay runs out; order is kept."""

from __future__ import annotations

from datetime import timedelta

from serving import outbox
from serving.metrics import ServiceMetrics
from serving.publisher import MemoryPublisher
from serving.store import Store
from tests.serving.conftest import FakeClock


def relay_pair(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/outbox.db")
    store.migrate()
    clock = FakeClock()
    first, second = MemoryPublisher(), MemoryPublisher()
    relays = (
        outbox.Relay(store, first, clock, ServiceMetrics()),
        outbox.Relay(store, second, clock, ServiceMetrics()),
    )
    return store, clock, (first, second), relays


def enqueue(store, clock, *values: bytes) -> None:
    with store.transaction() as session:
        for value in values:
            outbox.enqueue(session, "inventory.atp", "SKU-1|S01", value, clock())


def test_one_relay_at_a_time_and_a_dead_relays_lease_runs_out(tmp_path) -> None:
    store, clock, (first, second), (a, b) = relay_pair(tmp_path)
    enqueue(store, clock, b"1", b"2")
    assert a._take_lease()  # a is relaying (or died while relaying)
    assert b.run(force=True) == 0 and second.sent == []  # b leaves it to a
    assert a.run() == 2 and first.on("inventory.atp") == [b"1", b"2"]  # and releases the lease
    enqueue(store, clock, b"3")
    assert b.run() == 1 and second.on("inventory.atp") == [b"3"]
    assert a.run() == 0 and b.run() == 0  # nothing is sent twice

    enqueue(store, clock, b"4")
    assert a._take_lease()  # a dies holding the lease ...
    assert b.run(force=True) == 0
    clock.advance(seconds=outbox.LEASE.total_seconds() + 1)  # ... until it runs out
    assert b.run(force=True) == 1 and second.on("inventory.atp") == [b"3", b"4"]
    assert b.pending() == 0


def test_order_is_kept_when_the_relay_changes_hands(tmp_path) -> None:
    store, clock, (first, second), (a, b) = relay_pair(tmp_path)
    first.fail_topics.add("inventory.atp")
    enqueue(store, clock, b"1", b"2", b"3")
    assert a.run() == 0  # the broker refuses a's first message: nothing after it leaves
    assert b.run() == 3 and second.on("inventory.atp") == [b"1", b"2", b"3"]
    clock.advance(days=8)
    assert b.prune(timedelta(days=7)) == 3
