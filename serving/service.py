"""The approval service's use cases, each one database transaction: scores → alerts →
recommendations, decisions, effects, cycle counts, expiry. The HTTP API, the CLI and the Kafka
score consumer all call these; none of them touches the tables directly.

Time comes from the injected ``clock`` (UTC-aware). Actor names are user names, or
``policy:auto`` for what the policy does on its own and ``shelfguard-ai`` as the requester of
AI recommendations (so a human approver is never the requester of those).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from serving import audit, outbox, webhooks
from serving.effects import Atp, Effects, current_atp
from serving.errors import Conflict, EffectFailed, InvalidTransition, NotFound, StaleVersion
from serving.metrics import ServiceMetrics
from serving.outbox import Relay
from serving.policy import (
    ActionType,
    AlertContext,
    Mode,
    Policy,
    Proposal,
    propose,
    write_off_proposal,
)
from serving.publisher import Publisher
from serving.reconcile import Mismatch, Tolerance
from serving.schemas import ScoreIn
from serving.settings import ServiceSettings
from serving.store.db import Store
from serving.store.positions import upsert_positions
from serving.store.tables import (
    Alert,
    Approval,
    CountLabel,
    CountTask,
    DeadLetter,
    Hold,
    Position,
    Recommendation,
    ReconciliationException,
)
from serving.workflow import Decision, RecState, decide, transition

AI_REQUESTER = "shelfguard-ai"
POLICY_ACTOR = "policy:auto"
Clock = Callable[[], datetime]


@dataclass
class IngestResult:
    alerts: list[int]
    suppressed: int
    recommendations: list[int]


@dataclass(frozen=True)
class CountResult:
    task: CountTask
    outcome: str
    event_id: str


class ActionService:
    def __init__(
        self,
        store: Store,
        settings: ServiceSettings,
        policy: Policy,
        publisher: Publisher,
        clock: Clock,
        metrics: ServiceMetrics,
    ) -> None:
        self.store = store
        self.settings = settings
        self.policy = policy
        self.publisher = publisher
        self.clock = clock
        self.metrics = metrics
        self.effects = Effects(settings, policy)
        self.relay = Relay(store, publisher, clock, metrics)

    # -- scores → alerts → recommendations -------------------------------------------------
    def ingest_scores(self, scores: list[ScoreIn], actor: str) -> IngestResult:
        """Alerts for the scores that pass the policy's floor and are outside the cooldown.

        New alerts (``inventory.alerts``) and the effects of automatic actions go to the outbox
        with the batch and are published after the commit; with Kafka down they wait there
        and nothing is lost. Automatic actions are applied at once; the others wait as
        ``pending``.
        """
        now = self.clock()
        result = IngestResult([], 0, [])
        with self.store.transaction() as session:
            upsert_positions(
                session,
                ((s.sku, s.location, s.on_hand, s.reserved, s.as_of, s.unit_value) for s in scores),
                self.policy.default_unit_value,
                now,
            )
            for score in scores:
                for kind in ("phantom", "stockout"):
                    alert = self._raise_alert(session, score, kind, now)
                    if alert is None:
                        continue
                    if alert is False:
                        result.suppressed += 1
                        continue
                    result.alerts.append(alert.id)
                    result.recommendations += self._recommend(session, alert, actor, now)
        self.metrics.scores_ingested.inc(len(scores))
        if result.alerts:
            self.relay.run()
        return result

    def _raise_alert(self, session: Session, score: ScoreIn, kind: str, now: datetime):  # noqa: ANN202
        """A new Alert, False when suppressed by the cooldown, None when below the floor."""
        value = score.phantom_score if kind == "phantom" else score.stockout_score
        severity = self.policy.severity(value)
        if severity is None:
            return None
        since = now - timedelta(hours=self.policy.alerts.cooldown_hours)
        recent = session.scalar(
            select(Alert.id).where(
                Alert.sku == score.sku,
                Alert.location == score.location,
                Alert.kind == kind,
                Alert.created_at > since,
            )
        )
        if recent is not None:
            self.metrics.alerts_suppressed.inc()
            return False
        atp = current_atp(session, score.sku, score.location, now)
        alert = Alert(
            sku=score.sku,
            location=score.location,
            kind=kind,
            score=value,
            severity=severity,
            model=score.phantom_model if kind == "phantom" else score.stockout_model,
            explanation=score.phantom_explanation
            if kind == "phantom"
            else score.stockout_explanation,
            on_hand=atp.on_hand,
            reserved=atp.reserved,
            atp=atp.atp,
            as_of=score.as_of,
            created_at=now,
            status="open",
            features=score.features,
        )
        session.add(alert)
        session.flush()
        payload = alert_payload(alert)
        audit.append(
            session,
            at=now,
            actor=AI_REQUESTER,
            action="alert.raised",
            subject=f"alert:{alert.id}",
            policy_version=self.policy.version,
            model_version=alert.model,
            payload=payload,
        )
        outbox.enqueue(
            session,
            self.settings.alerts_topic,
            f"{alert.sku}|{alert.location}",
            json.dumps(payload).encode(),
            now,
        )
        webhooks.enqueue(session, "alert.raised", payload, now)
        self.metrics.alerts.labels(kind, severity).inc()
        self.metrics.event_to_alert.observe(max(0.0, (now - score.as_of).total_seconds()))
        return alert

    def _recommend(self, session: Session, alert: Alert, actor: str, now: datetime) -> list[int]:
        position = session.get(Position, (alert.sku, alert.location))
        assert position is not None
        day_start = datetime.combine(now.date(), time(0), tzinfo=now.tzinfo)
        counts_today = session.scalar(
            select(func.count(Recommendation.id)).where(
                Recommendation.action == ActionType.OPEN_CYCLE_COUNT.value,
                Recommendation.mode == Mode.AUTOMATIC.value,
                Recommendation.location == alert.location,
                Recommendation.created_at >= day_start,
            )
        )
        ctx = AlertContext(
            alert.kind, alert.score, alert.on_hand, position.unit_value, counts_today or 0
        )
        ids = []
        for proposal in propose(self.policy, ctx):
            rec = self._create(session, proposal, alert.sku, alert.location, now, alert=alert)
            ids.append(rec.id)
            if proposal.mode is Mode.AUTOMATIC:
                self._approve_and_apply(session, rec, POLICY_ACTOR, now)
        return ids

    def _create(
        self,
        session: Session,
        proposal: Proposal,
        sku: str,
        location: str,
        now: datetime,
        *,
        alert: Alert | None = None,
        requested_by: str = AI_REQUESTER,
        reason: str | None = None,
        erp_reference: str | None = None,
    ) -> Recommendation:
        rec = Recommendation(
            alert_id=alert.id if alert else None,
            action=proposal.action.value,
            mode=proposal.mode.value,
            state=RecState.PENDING.value,
            sku=sku,
            location=location,
            units=proposal.units,
            value_at_risk=round(proposal.value_at_risk, 2),
            priority=round(proposal.priority, 4),
            required_approvals=proposal.required_approvals,
            params={},
            requested_by=requested_by,
            reason=reason,
            policy_version=self.policy.version,
            model_version=alert.model if alert else None,
            erp_reference=erp_reference,
            created_at=now,
            expires_at=now + timedelta(hours=self.policy.recommendation_ttl_hours),
        )
        session.add(rec)
        session.flush()
        self._audit(session, rec, requested_by, "recommendation.created", now, mode=rec.mode)
        return rec

    def request_write_off(
        self, actor: str, sku: str, location: str, units: int, reason: str, erp: str | None
    ) -> Recommendation:
        """A human asks to write stock off: always approval (two approvers above the value)."""
        now = self.clock()
        with self.store.transaction() as session:
            position = session.get(Position, (sku, location))
            if position is None:
                raise NotFound(f"no position for sku {sku!r} at {location!r}")
            proposal = write_off_proposal(self.policy, units, position.unit_value)
            return self._create(
                session,
                proposal,
                sku,
                location,
                now,
                requested_by=actor,
                reason=reason,
                erp_reference=erp,
            )

    # -- decisions --------------------------------------------------------------------------
    def decide(
        self,
        rec_id: int,
        actor: str,
        decision: Decision,
        reason: str | None = None,
        expected_version: int | None = None,
        erp_reference: str | None = None,
    ) -> Recommendation:
        """Approve or reject; see :func:`serving.workflow.decide` for the rules. 409 when the
        recommendation was decided, expired or changed since ``expected_version``."""
        now = self.clock()
        if self._expire_if_due(rec_id, now):
            raise InvalidTransition(f"recommendation {rec_id} expired before it was decided")
        try:
            with self.store.transaction() as session:
                rec = self._get_rec(session, rec_id)
                if expected_version is not None and rec.version != expected_version:
                    raise StaleVersion(
                        f"recommendation {rec_id} is at version {rec.version}, you decided on "
                        f"version {expected_version}; reload it and decide again"
                    )
                approvers = frozenset(
                    session.scalars(
                        select(Approval.approver).where(Approval.recommendation_id == rec.id)
                    )
                )
                outcome = decide(
                    state=RecState(rec.state),
                    decision=decision,
                    actor=actor,
                    requested_by=rec.requested_by,
                    approvers_so_far=approvers,
                    required_approvals=rec.required_approvals,
                    reason=reason,
                )
                if erp_reference:
                    rec.erp_reference = erp_reference
                if outcome.record_approval:
                    session.add(Approval(recommendation_id=rec.id, approver=actor, at=now))
                    self._audit(session, rec, actor, "recommendation.approval_recorded", now)
                if decision is Decision.REJECT:
                    rec.state = RecState.REJECTED.value
                    rec.reason = reason
                    rec.decided_at = now
                    self._audit(session, rec, actor, "recommendation.rejected", now, reason=reason)
                    self.metrics.decisions.labels(rec.action, "rejected").inc()
                elif outcome.new_state is RecState.APPROVED:
                    self._approve_and_apply(session, rec, actor, now)
                else:
                    # still pending: touching the row bumps its version, so two approvers
                    # deciding at once cannot both count as "the first of two" (one gets 409)
                    rec.params = {**rec.params, "approvals": len(approvers) + 1}
                    session.flush()
        except StaleDataError:
            raise StaleVersion(
                f"recommendation {rec_id} was decided concurrently by someone else; reload it"
            ) from None
        if rec.state == RecState.APPLIED.value:
            self.relay.run()
        return rec

    def _approve_and_apply(
        self, session: Session, rec: Recommendation, actor: str, now: datetime
    ) -> None:
        rec.state = transition(RecState(rec.state), RecState.APPROVED).value
        rec.decided_at = now
        session.flush()
        self._audit(session, rec, actor, "recommendation.approved", now)
        self.metrics.decisions.labels(rec.action, "approved").inc()
        try:
            done = self.effects.apply(session, rec, now)
        except EffectFailed as exc:
            rec.state = transition(RecState.APPROVED, RecState.FAILED).value
            rec.failure = exc.detail
            session.flush()
            self._audit(session, rec, actor, "effect.failed", now, error=exc.detail)
            self.metrics.effects_failed.labels(rec.action).inc()
            return
        rec.state = transition(RecState.APPROVED, RecState.APPLIED).value
        session.flush()
        self._audit(session, rec, actor, "effect.applied", now, **done)

    def _get_rec(self, session: Session, rec_id: int) -> Recommendation:
        rec = session.get(Recommendation, rec_id)
        if rec is None:
            raise NotFound(f"recommendation {rec_id} does not exist")
        return rec

    def _audit(
        self,
        session: Session,
        rec: Recommendation,
        actor: str,
        action: str,
        now: datetime,
        **extra: object,
    ) -> None:
        audit.append(
            session,
            at=now,
            actor=actor,
            action=action,
            subject=f"recommendation:{rec.id}",
            policy_version=rec.policy_version,
            model_version=rec.model_version,
            erp_reference=rec.erp_reference,
            payload={
                "action": rec.action,
                "state": rec.state,
                "sku": rec.sku,
                "location": rec.location,
                "units": rec.units,
                **extra,
            },
        )

    # -- counts -----------------------------------------------------------------------------
    def complete_count(
        self, task_id: int, actor: str, counted: int, erp: str | None
    ) -> CountResult:
        """Record a count: emit the ``cycle_count`` event, resolve the alert, store the label,
        set the position's on-hand to the count and release the location's holds (the count
        confirms the stock that is there, so the hold has done its job)."""
        now = self.clock()
        with self.store.transaction() as session:
            task = session.get(CountTask, task_id)
            if task is None:
                raise NotFound(f"count task {task_id} does not exist")
            if task.state != "open":
                raise InvalidTransition(f"count task {task_id} is already {task.state}")
            position = session.get(Position, (task.sku, task.location))
            assert position is not None
            recorded = position.on_hand
            reference = erp or f"count-task-{task.id}"
            event_id = self.effects.emit_count(session, task, counted, now, reference)
            phantom = counted < recorded
            outcome = "confirmed_phantom" if phantom else "false_alarm"
            task.state, task.counted_quantity = "completed", counted
            task.completed_by, task.completed_at, task.event_id = actor, now, event_id
            alert = session.get(Alert, task.alert_id) if task.alert_id else None
            if alert is not None:
                alert.status, alert.resolved_at = outcome, now
            session.add(
                CountLabel(
                    task_id=task.id,
                    alert_id=task.alert_id,
                    sku=task.sku,
                    location=task.location,
                    phantom=int(phantom),
                    recorded_on_hand=recorded,
                    counted_quantity=counted,
                    score=alert.score if alert else None,
                    model=alert.model if alert else None,
                    counted_at=now,
                    as_of=alert.as_of if alert else None,
                    features=alert.features if alert else None,
                )
            )
            position.on_hand, position.as_of, position.updated_at = counted, now, now
            released = []
            for hold in session.scalars(
                select(Hold).where(
                    Hold.sku == task.sku,
                    Hold.location == task.location,
                    Hold.released_at.is_(None),
                    Hold.expires_at > now,
                )
            ):
                hold.released_at, hold.release_reason = now, "count_confirmed_stock"
                released.append(hold.id)
            session.flush()
            atp = self.effects.publish_atp(
                session, task.sku, task.location, now, f"count:{task.id}"
            )
            audit.append(
                session,
                at=now,
                actor=actor,
                action="count.completed",
                subject=f"count_task:{task.id}",
                policy_version=self.policy.version,
                model_version=alert.model if alert else None,
                erp_reference=reference,
                payload={
                    "sku": task.sku,
                    "location": task.location,
                    "recorded_on_hand": recorded,
                    "counted": counted,
                    "outcome": outcome,
                    "event_id": event_id,
                    "released_holds": released,
                    "atp": atp.atp,
                },
            )
        self.relay.run()
        return CountResult(task, outcome, event_id)

    # -- reads ------------------------------------------------------------------------------
    def atp(self, sku: str, location: str) -> Atp:
        with self.store.reader() as session:
            return current_atp(session, sku, location, self.clock())

    # -- expiry -----------------------------------------------------------------------------
    def _expire_if_due(self, rec_id: int, now: datetime) -> bool:
        with self.store.transaction() as session:
            rec = self._get_rec(session, rec_id)
            if rec.state != RecState.PENDING.value or rec.expires_at > now:
                return False
            self._expire(session, rec, now)
            return True

    def _expire(self, session: Session, rec: Recommendation, now: datetime) -> None:
        rec.state = transition(RecState(rec.state), RecState.EXPIRED).value
        rec.decided_at = now
        session.flush()
        self._audit(session, rec, "system:expiry", "recommendation.expired", now)
        self.metrics.decisions.labels(rec.action, "expired").inc()

    def sweep(self) -> tuple[int, int]:
        """Expire overdue pending recommendations; publish the ATP of holds that expired.
        Returns (recommendations expired, holds expired)."""
        now = self.clock()
        with self.store.transaction() as session:
            overdue = session.scalars(
                select(Recommendation).where(
                    Recommendation.state == RecState.PENDING.value,
                    Recommendation.expires_at <= now,
                )
            ).all()
            for rec in overdue:
                self._expire(session, rec, now)
        holds = 0
        with self.store.reader() as session:
            ids = session.scalars(
                select(Hold.id).where(
                    Hold.released_at.is_(None),
                    Hold.expires_at <= now,
                    Hold.expiry_published.is_(False),
                )
            ).all()
        for hold_id in ids:
            with self.store.transaction() as session:
                hold = session.get(Hold, hold_id)
                assert hold is not None
                self.effects.publish_atp(
                    session, hold.sku, hold.location, now, f"hold_expired:{hold.id}"
                )
                hold.expiry_published = True
                audit.append(
                    session,
                    at=now,
                    actor="system:expiry",
                    action="hold.expired",
                    subject=f"hold:{hold.id}",
                    policy_version=self.policy.version,
                    payload={"sku": hold.sku, "location": hold.location, "units": hold.units},
                )
                holds += 1
        self.relay.run(force=True)
        self.relay.prune()
        return len(overdue), holds

    # -- reconciliation -----------------------------------------------------------------------
    def record_exceptions(
        self, mismatches: list[Mismatch], tolerance: Tolerance, actor: str
    ) -> tuple[list[int], int]:
        """Store mismatches as reconciliation exceptions, one per (sku, location, source,
        as_of): a mismatch already stored for that instant is skipped, so re-running the same
        reconciliation adds nothing. Returns (ids created, number already known). Two
        reconcilers storing the same new mismatch at once: one fails on the unique constraint
        (409) and stores nothing; running it again is safe."""
        now = self.clock()
        created: list[int] = []
        sources: list[str] = []
        known = 0
        try:
            with self.store.transaction() as session:
                for m in mismatches:
                    exists = session.scalar(
                        select(ReconciliationException.id).where(
                            ReconciliationException.sku == m.sku,
                            ReconciliationException.location == m.location,
                            ReconciliationException.source == m.source,
                            ReconciliationException.as_of == m.as_of,
                        )
                    )
                    if exists is not None:
                        known += 1
                        continue
                    row = ReconciliationException(
                        sku=m.sku,
                        location=m.location,
                        source=m.source,
                        as_of=m.as_of,
                        stream_on_hand=m.stream_on_hand,
                        source_on_hand=m.source_on_hand,
                        difference=m.difference,
                        tolerance=tolerance.to_dict(),
                        last_events=list(m.last_events),
                        status="open",
                        detected_at=now,
                        detected_by=actor,
                    )
                    session.add(row)
                    session.flush()
                    created.append(row.id)
                    audit.append(
                        session,
                        at=now,
                        actor=actor,
                        action="reconciliation.exception",
                        subject=f"reconciliation_exception:{row.id}",
                        policy_version=self.policy.version,
                        payload={
                            "sku": m.sku,
                            "location": m.location,
                            "source": m.source,
                            "as_of": m.as_of.isoformat(),
                            "stream_on_hand": m.stream_on_hand,
                            "source_on_hand": m.source_on_hand,
                            "difference": m.difference,
                        },
                    )
                    sources.append(m.source)
        except IntegrityError:
            raise Conflict(
                "another reconciliation stored the same exceptions at the same time; run again"
            ) from None
        for source in sources:
            self.metrics.reconciliation_exceptions.labels(source).inc()
        return created, known

    # -- dead letters -----------------------------------------------------------------------
    def dead_letter(
        self,
        source: str,
        raw: str,
        reason: str,
        message: tuple[str, str, bytes] | None = None,
    ) -> None:
        """Keep an unusable input with its reason; ``message`` (topic, key, value), e.g. for a
        dead-letter topic, goes out through the outbox with it."""
        now = self.clock()
        with self.store.transaction() as session:
            session.add(DeadLetter(source=source, raw=raw[:10_000], reason=reason[:2000], at=now))
            if message is not None:
                outbox.enqueue(session, *message, now)
        self.metrics.dead_letters.labels(source).inc()
        if message is not None:
            self.relay.run()


def alert_payload(alert: Alert) -> dict:
    """The ``inventory.alerts`` message and the webhook body of an alert."""
    return {
        "alert_id": alert.id,
        "sku": alert.sku,
        "location": alert.location,
        "kind": alert.kind,
        "score": alert.score,
        "severity": alert.severity,
        "model": alert.model,
        "explanation": alert.explanation,
        "position": {"on_hand": alert.on_hand, "reserved": alert.reserved, "atp": alert.atp},
        "as_of": alert.as_of.isoformat(),
        "created_at": alert.created_at.isoformat(),
    }
