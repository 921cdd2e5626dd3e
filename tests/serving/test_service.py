"""Service behaviour over HTTP with a fake clock and an in-memory publisher: maker-checker,
reasons, two approvers, expiry, optimistic concurrency, effects, cooldown, bad input,
Idempotency-Key, webhooks, metrics, health."""

from __future__ import annotations

import json

import pytest

from serving.publisher import MemoryPublisher
from serving.webhooks import signature
from tests.serving.conftest import score_row


@pytest.fixture
def svc(make_service):
    return make_service()


def pending(svc, action: str) -> dict:
    recs = svc.get("/recommendations?state=pending", "ana").json()
    return next(r for r in recs if r["action"] == action)


def test_reject_needs_a_reason_and_is_audited(svc) -> None:
    svc.post("/scores", "olga", {"scores": [score_row()]})
    rec = pending(svc, "lower_atp_exposure")
    r = svc.post(f"/recommendations/{rec['id']}/decision", "ana", {"decision": "reject"})
    assert r.status_code == 422 and "reason" in r.json()["detail"]
    r = svc.post(
        f"/recommendations/{rec['id']}/decision",
        "ana",
        {"decision": "reject", "reason": "shelf checked, stock is there"},
    )
    assert r.json()["state"] == "rejected"
    assert svc.get("/atp/SKU-1/S01", "olga").json()["risk_hold"] == 0
    rows = svc.get("/audit", "admin").json()
    assert any(x["action"] == "recommendation.rejected" and x["actor"] == "ana" for x in rows)


def test_maker_checker_and_two_approvers_for_a_large_write_off(svc) -> None:
    svc.post("/scores", "olga", {"scores": [score_row(unit_value=100.0)]})
    r = svc.post(
        "/write-offs",
        "admin",
        {
            "sku": "SKU-1",
            "location": "S01",
            "units": 20,
            "reason": "water damage",
            "erp_reference": "ERP-9",
        },
    )
    assert r.status_code == 201, r.text
    rec = r.json()
    assert rec["mode"] == "approval" and rec["required_approvals"] == 2  # 2000 > 1000
    own = svc.post(f"/recommendations/{rec['id']}/decision", "admin", {"decision": "approve"})
    assert own.status_code == 403 and "maker-checker" in own.json()["detail"]
    first = svc.post(f"/recommendations/{rec['id']}/decision", "ana", {"decision": "approve"})
    assert first.json()["state"] == "pending" and first.json()["approvals"] == ["ana"]
    twice = svc.post(f"/recommendations/{rec['id']}/decision", "ana", {"decision": "approve"})
    assert twice.status_code == 409
    second = svc.post(f"/recommendations/{rec['id']}/decision", "bert", {"decision": "approve"})
    assert second.json()["state"] == "applied"
    event = json.loads(svc.publisher.on("inventory.events")[0])
    assert (event["event_type"], event["quantity"], event["reference"]) == (
        "adjustment",
        -20,
        "ERP-9",
    )
    assert svc.get("/atp/SKU-1/S01", "olga").json()["on_hand"] == 20


def test_stale_version_is_409(svc) -> None:
    svc.post("/scores", "olga", {"scores": [score_row(unit_value=100.0)]})
    rec = svc.post(
        "/write-offs", "olga", {"sku": "SKU-1", "location": "S01", "units": 20, "reason": "broken"}
    ).json()
    svc.post(f"/recommendations/{rec['id']}/decision", "ana", {"decision": "approve"})
    r = svc.post(
        f"/recommendations/{rec['id']}/decision",
        "bert",
        {"decision": "approve", "expected_version": rec["version"]},
    )
    assert r.status_code == 409 and r.json()["error"] == "stale_version"


def test_pending_recommendations_expire(svc) -> None:
    svc.post("/scores", "olga", {"scores": [score_row()]})
    rec = pending(svc, "lower_atp_exposure")
    svc.clock.advance(hours=25)
    r = svc.post(f"/recommendations/{rec['id']}/decision", "ana", {"decision": "approve"})
    assert r.status_code == 409 and "expired" in r.json()["detail"]
    assert svc.get(f"/recommendations/{rec['id']}", "ana").json()["state"] == "expired"
    swept = svc.post("/admin/sweep", "admin").json()
    assert swept["expired_recommendations"] == 1  # the other one (the count)


def test_automatic_actions_apply_at_once_and_holds_expire(svc) -> None:
    # score 0.9: count automatic; 5 units × 10 = 50 ≤ 200: hold automatic
    r = svc.post(
        "/scores", "olga", {"scores": [score_row(phantom_score=0.9, on_hand=5, reserved=0)]}
    )
    recs = svc.get("/recommendations", "ana").json()
    assert {(x["action"], x["state"], x["mode"]) for x in recs} == {
        ("open_cycle_count", "applied", "automatic"),
        ("lower_atp_exposure", "applied", "automatic"),
    }
    assert r.json()["alerts"] and svc.get("/atp/SKU-1/S01", "olga").json()["atp"] == 0
    assert len(svc.get("/tasks?store=S01", "olga").json()) == 1
    svc.clock.advance(hours=73)  # past hold_ttl_hours
    assert svc.get("/atp/SKU-1/S01", "olga").json()["atp"] == 5
    assert svc.post("/admin/sweep", "admin").json()["expired_holds"] == 1
    last = json.loads(svc.publisher.on("inventory.atp")[-1])
    assert last["atp"] == 5 and last["reason"].startswith("hold_expired")
    assert svc.post("/admin/sweep", "admin").json()["expired_holds"] == 0  # published once


def test_the_background_sweeper_releases_expired_holds_on_its_own(make_service) -> None:
    import time

    svc = make_service(background_interval_s=0.05)
    svc.post("/scores", "olga", {"scores": [score_row(phantom_score=0.9, on_hand=5, reserved=0)]})
    assert svc.get("/atp/SKU-1/S01", "olga").json()["atp"] == 0
    svc.clock.advance(hours=73)  # past hold_ttl_hours; nobody calls /admin/sweep
    deadline = time.monotonic() + 10
    while not svc.publisher.on("inventory.atp")[1:] and time.monotonic() < deadline:
        time.sleep(0.05)
    last = json.loads(svc.publisher.on("inventory.atp")[-1])
    assert last["atp"] == 5 and last["reason"].startswith("hold_expired")
    assert svc.post("/admin/sweep", "admin").json()["expired_holds"] == 0  # already done


def test_count_budget_queues_counts_once_exhausted(make_service, tmp_path) -> None:
    import yaml

    from serving.settings import DEFAULT_POLICY

    data = yaml.safe_load(DEFAULT_POLICY.read_text())
    data["actions"]["open_cycle_count"]["daily_count_budget_per_store"] = 1
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    svc = make_service(policy_path=path)
    rows = [score_row(f"SKU-{i}", phantom_score=0.9, unit_value=1000.0) for i in range(3)]
    svc.post("/scores", "olga", {"scores": rows})
    counts = [
        r for r in svc.get("/recommendations", "ana").json() if r["action"] == "open_cycle_count"
    ]
    assert sorted(r["mode"] for r in counts) == ["approval", "approval", "automatic"]


def test_alert_cooldown(svc) -> None:
    first = svc.post("/scores", "olga", {"scores": [score_row()]}).json()
    svc.clock.advance(hours=1)
    again = svc.post("/scores", "olga", {"scores": [score_row(phantom_score=0.8)]}).json()
    assert len(first["alerts"]) == 1 and again == {
        "alerts": [],
        "suppressed": 1,
        "recommendations": [],
    }
    svc.clock.advance(hours=24)
    assert len(svc.post("/scores", "olga", {"scores": [score_row()]}).json()["alerts"]) == 1


def metric(svc, name: str) -> float:
    return svc.runtime.metrics.registry.get_sample_value(name) or 0.0


def test_effects_wait_in_the_outbox_while_kafka_is_down(make_service) -> None:
    publisher = MemoryPublisher()
    svc = make_service(publisher=publisher)
    svc.post("/scores", "olga", {"scores": [score_row()]})
    publisher.fail_topics.add("inventory.atp")
    rec = pending(svc, "lower_atp_exposure")
    r = svc.post(f"/recommendations/{rec['id']}/decision", "ana", {"decision": "approve"})
    assert r.status_code == 200 and r.json()["state"] == "applied"  # the decision is stored
    assert svc.get("/atp/SKU-1/S01", "olga").json()["atp"] == 0
    assert publisher.on("inventory.atp") == []  # ... and its ATP update waits
    assert metric(svc, "shelfguard_outbox_pending") == 1
    assert metric(svc, "shelfguard_outbox_failures_total") == 1
    publisher.fail_topics.clear()
    svc.post("/admin/sweep", "admin")  # the sweeper retries
    [update] = [json.loads(v) for v in publisher.on("inventory.atp")]
    assert update["atp"] == 0 and update["reason"].startswith("risk_hold")
    assert metric(svc, "shelfguard_outbox_pending") == 0
    svc.post("/admin/sweep", "admin")
    assert len(publisher.on("inventory.atp")) == 1  # sent once


def test_outbox_keeps_the_order_across_an_outage(make_service) -> None:
    publisher = MemoryPublisher(fail_topics={"inventory.alerts"})
    svc = make_service(publisher=publisher)
    for sku in ("SKU-1", "SKU-2", "SKU-3"):
        row = score_row(sku, phantom_score=0.9, on_hand=5, reserved=0)
        r = svc.post("/scores", "olga", {"scores": [row]})
        assert r.status_code == 200 and r.json()["alerts"], r.text  # stored while Kafka is down
    assert publisher.sent == []  # the first alert failed, nothing overtook it
    publisher.fail_topics.clear()
    svc.post("/admin/sweep", "admin")
    alerts = [json.loads(v)["sku"] for v in publisher.on("inventory.alerts")]
    assert alerts == ["SKU-1", "SKU-2", "SKU-3"]
    topics = [t for t, _k, _v in publisher.sent]
    # each alert's own effects follow it (automatic hold at 0.9 → ATP update)
    assert topics.index("inventory.alerts") < topics.index("inventory.atp")


def test_a_rolled_back_change_sends_nothing(make_service) -> None:
    publisher = MemoryPublisher()
    svc = make_service(publisher=publisher)
    service = svc.runtime.service
    from serving.schemas import ScoreIn

    good = ScoreIn.model_validate(score_row("SKU-9", phantom_score=0.9))
    original = service._recommend

    def explode(*args, **kwargs):  # noqa: ANN002, ANN003
        original(*args, **kwargs)
        raise RuntimeError("database went away mid-transaction")

    service._recommend = explode
    with pytest.raises(RuntimeError):
        service.ingest_scores([good], "test")
    service._recommend = original
    svc.post("/admin/sweep", "admin")
    assert publisher.sent == [] and svc.get("/alerts", "olga").json() == []


def test_bad_input_gets_field_level_422(svc) -> None:
    bad = score_row(phantom_score=1.7, as_of="2026-03-02T08:00:00")  # no zone
    r = svc.post("/scores", "olga", {"scores": [bad]})
    assert r.status_code == 422
    fields = {tuple(e["loc"][-1:]) for e in r.json()["detail"]}
    assert {("phantom_score",), ("as_of",)} <= fields
    assert svc.post("/tasks/1/count", "olga", {"counted_quantity": -1}).status_code == 422
    assert svc.get("/atp/NOPE/S01", "olga").status_code == 404


def test_idempotency_key_replays_and_refuses_reuse(svc) -> None:
    svc.post("/scores", "olga", {"scores": [score_row(unit_value=100.0)]})
    body = {"sku": "SKU-1", "location": "S01", "units": 2, "reason": "broken"}
    key = {"Idempotency-Key": "wo-1"}
    a = svc.post("/write-offs", "olga", body, headers=key)
    b = svc.post("/write-offs", "olga", body, headers=key)
    assert a.status_code == b.status_code == 201
    assert a.json() == b.json() and b.headers["Idempotency-Replayed"] == "true"
    writeoffs = [
        r for r in svc.get("/recommendations", "ana").json() if r["action"] == "inventory_write_off"
    ]
    assert len(writeoffs) == 1
    c = svc.post("/write-offs", "olga", {**body, "units": 3}, headers=key)
    assert c.status_code == 422 and "different request" in c.json()["detail"]
    # another caller's key space is separate
    d = svc.post("/write-offs", "admin", body, headers=key)
    assert d.status_code == 201 and d.json()["id"] != a.json()["id"]


class FlakySender:
    def __init__(self, statuses: list[int | Exception]) -> None:
        self.statuses = statuses
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        self.calls.append((url, body, headers))
        outcome = self.statuses.pop(0) if self.statuses else 200
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_webhooks_are_signed_retried_with_backoff_and_logged(make_service) -> None:
    svc = make_service(webhook_backoff_s=10, webhook_max_attempts=5)
    sender = FlakySender([500, ConnectionError("refused"), 204])
    svc.runtime.sender = sender
    secret = "whsec-" + "k" * 26
    assert (
        svc.post(
            "/webhooks", "admin", {"url": "http://127.0.0.1:9/hook", "secret": secret}
        ).status_code
        == 201
    )
    svc.post("/scores", "olga", {"scores": [score_row()]})
    assert svc.post("/admin/sweep", "admin").json()["webhook_attempts"] == 1
    assert svc.post("/admin/sweep", "admin").json()["webhook_attempts"] == 0  # backoff: 10 s
    svc.clock.advance(seconds=10)
    assert svc.post("/admin/sweep", "admin").json()["webhook_attempts"] == 1  # refused
    svc.clock.advance(seconds=19)
    assert svc.post("/admin/sweep", "admin").json()["webhook_attempts"] == 0  # next after 20 s
    svc.clock.advance(seconds=1)
    assert svc.post("/admin/sweep", "admin").json()["webhook_attempts"] == 1
    (log,) = svc.get("/webhooks/deliveries", "admin").json()
    assert (log["state"], log["attempts"], log["last_status"]) == ("delivered", 3, 204)
    _url, body, headers = sender.calls[-1]
    assert headers["X-Shelfguard-Signature"] == signature(
        secret, int(headers["X-Shelfguard-Timestamp"]), body
    )
    assert json.loads(body)["sku"] == "SKU-1"
    assert len({h["X-Shelfguard-Delivery"] for _u, _b, h in sender.calls}) == 1
    metrics = svc.client.get("/metrics").text
    assert "shelfguard_webhook_failures_total 2.0" in metrics


def test_webhook_dead_letters_after_max_attempts(make_service) -> None:
    svc = make_service(webhook_backoff_s=0, webhook_max_attempts=2)
    svc.runtime.sender = FlakySender([500, 500, 500])
    svc.post("/webhooks", "admin", {"url": "http://127.0.0.1:9/hook", "secret": "s" * 20})
    svc.post("/scores", "olga", {"scores": [score_row()]})
    svc.post("/admin/sweep", "admin")
    svc.post("/admin/sweep", "admin")
    assert svc.post("/admin/sweep", "admin").json()["webhook_attempts"] == 0
    (log,) = svc.get("/webhooks/deliveries", "admin").json()
    assert log["state"] == "dead" and log["attempts"] == 2
    assert 'shelfguard_dead_letters_total{source="webhook"} 1.0' in svc.client.get("/metrics").text


def test_metrics_health_and_readiness(svc) -> None:
    svc.post("/scores", "olga", {"scores": [score_row(), score_row("SKU-9", phantom_score=0.95)]})
    text = svc.client.get("/metrics").text
    assert 'shelfguard_alerts_total{kind="phantom",severity="critical"} 1.0' in text
    assert "shelfguard_event_to_alert_seconds_count 2.0" in text
    assert 'shelfguard_decisions_total{action="open_cycle_count",decision="approved"} 1.0' in text
    assert svc.client.get("/healthz").json() == {"status": "ok"}
    ready = svc.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] is True


def test_csv_ingest_dead_letters_bad_rows(svc, tmp_path) -> None:
    import csv

    from serving.score_feed import ingest_csv

    path = tmp_path / "scores.csv"
    rows = [
        score_row(),
        score_row("SKU-2", phantom_score="lots"),
        score_row("SKU-3", phantom_score=0.1),
    ]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = ingest_csv(svc.runtime.service, path, actor="test")
    assert (result.read, result.dead_lettered, result.alerts) == (3, 1, 1)
    assert (
        'shelfguard_dead_letters_total{source="scores_csv"} 1.0' in svc.client.get("/metrics").text
    )
