"""The issue's scripted flow over HTTP, against SQLite and against a real PostgreSQL server,
with effects published to the real Kafka broker: scores in → alert → recommendation → approved
by a second user → ATP lowered and the update seen on Kafka → cycle count completed → label
stored → `shelfguard audit verify` passes; the database refuses UPDATE/DELETE of audit rows, and
tampering with one row behind the trigger's back makes `audit verify` fail."""

from __future__ import annotations

import json
import subprocess

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from serving.publisher import KafkaPublisher
from tests.serving.conftest import REPO, read_topic, score_row

SHELFGUARD = REPO / ".venv" / "bin" / "shelfguard"


def audit_verify(database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SHELFGUARD), "audit", "verify", "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def run_flow(svc, database_url: str, topics: dict[str, str] | None, bootstrap: str | None) -> None:
    # scores in -> alert + two recommendations that need approval under the default policy
    r = svc.post(
        "/scores", "olga", {"scores": [score_row(), score_row("SKU-2", phantom_score=0.1)]}
    )
    assert r.status_code == 200, r.text
    ingest = r.json()
    assert len(ingest["alerts"]) == 1 and len(ingest["recommendations"]) == 2
    alert = svc.get("/alerts", "olga").json()[0]
    assert alert["model"] == "phantom-inventory:3" and alert["severity"] == "medium"
    assert alert["on_hand"] == 40 and alert["atp"] == 35 and "pick shorts" in alert["explanation"]

    recs = {r["action"]: r for r in svc.get("/recommendations?state=pending", "ana").json()}
    assert set(recs) == {"open_cycle_count", "lower_atp_exposure"}
    hold = recs["lower_atp_exposure"]
    assert hold["requested_by"] == "shelfguard-ai" and hold["policy_version"]
    assert svc.get("/atp/SKU-1/S01", "olga").json()["atp"] == 35

    # approved by a second user -> ATP lowered, update on inventory.atp
    r = svc.post(
        f"/recommendations/{hold['id']}/decision",
        "ana",
        {"decision": "approve", "expected_version": hold["version"], "erp_reference": "ERP-4711"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "applied"
    atp = svc.get("/atp/SKU-1/S01", "olga").json()
    assert atp["risk_hold"] == 40 and atp["atp"] == 0

    # deciding twice is a conflict
    again = svc.post(f"/recommendations/{hold['id']}/decision", "bert", {"decision": "approve"})
    assert again.status_code == 409

    # the cycle count: approved by bert, task at the store, completed by ops
    count_rec = recs["open_cycle_count"]
    r = svc.post(f"/recommendations/{count_rec['id']}/decision", "bert", {"decision": "approve"})
    assert r.json()["state"] == "applied", r.text
    tasks = svc.get("/tasks?store=S01&state=open", "olga").json()
    assert len(tasks) == 1 and tasks[0]["recorded_on_hand"] == 40
    r = svc.post(f"/tasks/{tasks[0]['id']}/count", "olga", {"counted_quantity": 12})
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "confirmed_phantom"
    event_id = r.json()["event_id"]
    atp = svc.get("/atp/SKU-1/S01", "olga").json()
    assert atp == {**atp, "on_hand": 12, "risk_hold": 0, "atp": 7}  # the count released the hold
    assert svc.get("/alerts", "olga").json()[0]["status"] == "confirmed_phantom"

    labels = svc.get("/labels", "dana").json()
    assert [(lb["sku"], lb["phantom"], lb["counted_quantity"]) for lb in labels] == [
        ("SKU-1", 1, 12)
    ]

    # what the channels and the event stream saw
    if topics is not None:
        assert bootstrap is not None
        atp_msgs = [json.loads(v) for _k, v in read_topic(bootstrap, topics["atp"], 2)]
        assert [(m["atp"], m["risk_hold"]) for m in atp_msgs] == [(0, 40), (7, 0)]
        events = [json.loads(v) for _k, v in read_topic(bootstrap, topics["events"], 1)]
        assert events[0]["event_id"] == event_id and events[0]["event_type"] == "cycle_count"
        assert events[0]["quantity"] == 12 and events[0]["source"] == "store_ops"
        alerts = read_topic(bootstrap, topics["alerts"], 1)
        assert alerts[0][0] == "SKU-1|S01" and json.loads(alerts[0][1])["alert_id"] == alert["id"]
    else:
        atp_msgs = [json.loads(v) for v in svc.publisher.on("inventory.atp")]
        assert [(m["atp"], m["risk_hold"]) for m in atp_msgs] == [(0, 40), (7, 0)]

    # the audit chain: intact, then one row tampered with
    audit_rows = svc.get("/audit?limit=1000", "admin").json()
    actions = {row["action"] for row in audit_rows}
    assert {
        "alert.raised",
        "recommendation.approved",
        "effect.applied",
        "count.completed",
    } <= actions
    approved = next(
        r for r in audit_rows if r["action"] == "recommendation.approved" and r["actor"] == "ana"
    )
    assert (
        approved["erp_reference"] == "ERP-4711"
        and approved["model_version"] == "phantom-inventory:3"
    )
    ok = audit_verify(database_url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "intact" in ok.stdout
    engine = create_engine(database_url)
    # the database refuses to change or delete audit rows (append-only trigger) ...
    for statement in (
        "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3",
        "DELETE FROM audit_log WHERE seq = 3",
    ):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    assert audit_verify(database_url).returncode == 0
    # ... so tamper behind the trigger's back, as the table owner could; the chain still shows it
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"))
    engine.dispose()
    bad = audit_verify(database_url)
    assert bad.returncode == 1 and "seq 3" in bad.stdout, bad.stdout


def test_flow_sqlite_memory_publisher(make_service, tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/flow.db"
    run_flow(make_service(url), url, None, None)


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_flow_with_real_kafka(
    backend, make_service, kafka_broker, kafka_topics, tmp_path, request
) -> None:
    url = (
        f"sqlite:///{tmp_path}/flow.db"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    publisher = KafkaPublisher(kafka_broker)
    svc = make_service(
        url,
        publisher=publisher,
        kafka_bootstrap=kafka_broker,
        atp_topic=kafka_topics["atp"],
        alerts_topic=kafka_topics["alerts"],
        events_topic=kafka_topics["events"],
    )
    run_flow(svc, url, kafka_topics, kafka_broker)
