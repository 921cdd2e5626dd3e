"""The HTTP API: ``create_app(settings, clock, publisher)`` builds one FastAPI app.

Errors: any :class:`~serving.errors.ShelfguardError` becomes ``{"error", "detail"}`` with its
status; bad request bodies are 422 with FastAPI's field-level ``detail`` list. Every
state-changing endpoint needs a token (401) of an allowed role (403); see :mod:`serving.auth`.
"""

import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from serving import audit, labels
from serving.auth import COOKIE, Principal, Role, authenticate, authorize, create_user
from serving.errors import NotFound, ShelfguardError
from serving.idempotency import IdempotencyMiddleware
from serving.metrics import ServiceMetrics
from serving.policy import load_policy
from serving.publisher import MemoryPublisher, Publisher
from serving.schemas import (
    AlertOut,
    AtpOut,
    AuditOut,
    CountIn,
    CountOut,
    DecisionIn,
    DeliveryOut,
    ExceptionOut,
    IngestOut,
    LabelOut,
    RecommendationOut,
    ScoresIn,
    SweepOut,
    TaskOut,
    UserIn,
    UserOut,
    VerifyOut,
    WebhookIn,
    WebhookOut,
    WriteOffIn,
)
from serving.service import ActionService
from serving.settings import ServiceSettings
from serving.store.db import Store
from serving.store.tables import (
    Alert,
    Approval,
    AuditEntry,
    CountLabel,
    CountTask,
    Recommendation,
    ReconciliationException,
    Webhook,
    WebhookDelivery,
)
from serving.webhooks import HttpxSender, WebhookSender, deliver_due

Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
Limit = Annotated[int, Query(ge=1, le=1000)]


def database_unavailable() -> JSONResponse:
    """503 for a database that does not answer: nothing was changed, the client may retry."""
    return JSONResponse(
        {
            "error": "database_unavailable",
            "detail": "the database is not reachable right now; nothing was changed, "
            "retry in a few seconds (with the same Idempotency-Key for a POST)",
        },
        status_code=503,
        headers={"Retry-After": "5"},
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_publisher(settings: ServiceSettings) -> Publisher:
    if settings.kafka_enabled:
        from serving.publisher import KafkaPublisher

        assert settings.kafka_bootstrap is not None
        return KafkaPublisher(settings.kafka_bootstrap)
    return MemoryPublisher()


class Runtime:
    """What the routes share: the store, the service and the clock (``app.state.runtime``)."""

    def __init__(
        self,
        settings: ServiceSettings,
        clock: Callable[[], datetime],
        publisher: Publisher,
        sender: WebhookSender,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = ServiceMetrics()
        self.policy = load_policy(settings.policy_path)
        self.store = Store(settings.database_url)
        self.publisher = publisher
        self.sender = sender
        self.service = ActionService(
            self.store, settings, self.policy, publisher, clock, self.metrics
        )

    def sweep(self) -> SweepOut:
        recs, holds = self.service.sweep()
        attempts = deliver_due(self.store, self.sender, self.settings, self.metrics, self.clock)
        return SweepOut(
            expired_recommendations=recs, expired_holds=holds, webhook_attempts=attempts
        )


def create_app(
    settings: ServiceSettings | None = None,
    clock: Callable[[], datetime] = utc_now,
    publisher: Publisher | None = None,
    webhook_sender: WebhookSender | None = None,
) -> FastAPI:
    settings = settings or ServiceSettings()
    runtime = Runtime(
        settings, clock, publisher or default_publisher(settings), webhook_sender or HttpxSender()
    )
    runtime.store.migrate()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # noqa: ANN202
        stop = threading.Event()
        worker = None
        if settings.background_interval_s > 0:
            worker = threading.Thread(
                target=_sweeper, args=(runtime, stop), name="shelfguard-sweeper", daemon=True
            )
            worker.start()
        yield
        stop.set()
        if worker is not None:
            worker.join(timeout=10)
        runtime.publisher.close()
        runtime.store.dispose()

    app = FastAPI(
        title="shelfguard approval service",
        version="1",
        description="Alerts, approval-gated recommendations, ATP holds, counts, audit.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.add_middleware(IdempotencyMiddleware, store=runtime.store, clock=clock)

    @app.exception_handler(ShelfguardError)
    async def _shelfguard_error(_request: Request, exc: ShelfguardError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(OperationalError)
    async def _database_down(_request: Request, _exc: OperationalError) -> JSONResponse:
        return database_unavailable()

    _api_routes(app, runtime)
    from serving.ui.routes import ui_router

    app.include_router(ui_router(runtime))
    return app


def principal_dependency(runtime: Runtime) -> Callable[..., Principal]:
    def principal(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        token = token or request.cookies.get(COOKIE)
        with runtime.store.reader() as session:
            return authenticate(session, token, runtime.settings.token_pepper.get_secret_value())

    return principal


def _api_routes(app: FastAPI, rt: Runtime) -> None:  # noqa: C901 - a flat list of routes
    principal = principal_dependency(rt)

    def role(*roles: Role) -> Callable[..., Principal]:
        allowed = frozenset(roles)

        def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
            return authorize(who, allowed)

        return check

    Anyone = Annotated[Principal, Depends(principal)]
    Ops = Annotated[Principal, Depends(role(Role.OPS))]
    Ingest = Annotated[Principal, Depends(role(Role.OPS, Role.DATA_SCIENTIST))]
    Approver = Annotated[Principal, Depends(role(Role.APPROVER))]
    Scientist = Annotated[Principal, Depends(role(Role.DATA_SCIENTIST))]
    Reconciler = Annotated[Principal, Depends(role(Role.OPS, Role.APPROVER))]
    Admin = Annotated[Principal, Depends(role(Role.ADMIN))]

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    def readyz() -> JSONResponse:
        """Readiness: database reachable and migrated, publisher connected."""
        checks = {"database": rt.store.ready(), "publisher": rt.publisher.ready()}
        ok = all(checks.values())
        return JSONResponse({"ready": ok, **checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(
            generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    @app.post("/scores", response_model=IngestOut, tags=["alerts"])
    def ingest_scores(body: ScoresIn, who: Ingest) -> IngestOut:
        """Turn scores (rows of `shelfguard score`) into alerts and recommendations."""
        result = rt.service.ingest_scores(body.scores, who.name)
        return IngestOut(
            alerts=result.alerts,
            suppressed=result.suppressed,
            recommendations=result.recommendations,
        )

    @app.get("/alerts", response_model=list[AlertOut], tags=["alerts"])
    def list_alerts(_who: Anyone, status: str | None = None, limit: Limit = 100) -> list[Alert]:
        with rt.store.reader() as session:
            query = select(Alert).order_by(Alert.id.desc()).limit(limit)
            if status:
                query = query.where(Alert.status == status)
            return list(session.scalars(query))

    @app.get("/recommendations", response_model=list[RecommendationOut], tags=["workflow"])
    def list_recommendations(
        _who: Anyone, state: str | None = None, limit: Limit = 100
    ) -> list[RecommendationOut]:
        with rt.store.reader() as session:
            query = (
                select(Recommendation)
                .order_by(Recommendation.priority.desc(), Recommendation.id)
                .limit(limit)
            )
            if state:
                query = query.where(Recommendation.state == state)
            return [recommendation_out(session, r) for r in session.scalars(query)]

    @app.get("/recommendations/{rec_id}", response_model=RecommendationOut, tags=["workflow"])
    def get_recommendation(rec_id: Id, _who: Anyone) -> RecommendationOut:
        with rt.store.reader() as session:
            rec = session.get(Recommendation, rec_id)
            if rec is None:
                raise NotFound(f"recommendation {rec_id} does not exist")
            return recommendation_out(session, rec)

    @app.post(
        "/recommendations/{rec_id}/decision", response_model=RecommendationOut, tags=["workflow"]
    )
    def decide(rec_id: Id, body: DecisionIn, who: Approver) -> RecommendationOut:
        """Approve or reject (reason required). 409 when already decided, expired or stale."""
        rt.service.decide(
            rec_id, who.name, body.decision, body.reason, body.expected_version, body.erp_reference
        )
        with rt.store.reader() as session:
            rec = session.get(Recommendation, rec_id)
            assert rec is not None
            return recommendation_out(session, rec)

    @app.post("/write-offs", response_model=RecommendationOut, status_code=201, tags=["workflow"])
    def request_write_off(body: WriteOffIn, who: Ops) -> RecommendationOut:
        """Ask for an inventory write-off: always approval, by someone else."""
        rec = rt.service.request_write_off(
            who.name, body.sku, body.location, body.units, body.reason, body.erp_reference
        )
        with rt.store.reader() as session:
            return recommendation_out(session, rec)

    @app.get("/atp/{sku}/{location}", response_model=AtpOut, tags=["atp"])
    def get_atp(sku: str, location: str, _who: Anyone) -> AtpOut:
        atp = rt.service.atp(sku, location)
        return AtpOut(**{f: getattr(atp, f) for f in AtpOut.model_fields})

    @app.get("/tasks", response_model=list[TaskOut], tags=["counts"])
    def list_tasks(
        _who: Anyone, store: str | None = None, state: str | None = None, limit: Limit = 100
    ) -> list[CountTask]:
        with rt.store.reader() as session:
            query = select(CountTask).order_by(CountTask.id.desc()).limit(limit)
            if store:
                query = query.where(CountTask.store == store)
            if state:
                query = query.where(CountTask.state == state)
            return list(session.scalars(query))

    @app.post("/tasks/{task_id}/count", response_model=CountOut, tags=["counts"])
    def complete_count(task_id: Id, body: CountIn, who: Ops) -> CountOut:
        """Record a cycle count: emits a cycle_count event, resolves the alert, stores a label."""
        result = rt.service.complete_count(
            task_id, who.name, body.counted_quantity, body.erp_reference
        )
        return CountOut(
            task=TaskOut.model_validate(result.task),
            outcome=result.outcome,
            event_id=result.event_id,
        )

    @app.get(
        "/labels",
        response_model=list[LabelOut],
        tags=["counts"],
        responses={
            200: {
                "content": {
                    "application/vnd.apache.parquet": {},
                    "application/x-ndjson": {},
                }
            }
        },
    )
    def list_labels(
        _who: Scientist,
        limit: Annotated[int | None, Query(ge=1, le=10_000_000)] = None,
        format: Literal["json", "parquet", "jsonl"] = "json",
    ) -> list[CountLabel] | Response:
        """Count outcomes as labels, oldest first. ``json``: the stored labels (phantom = 1:
        the count found less than recorded), 1000 unless ``limit`` says otherwise.
        ``parquet`` / ``jsonl``: training rows for ``shelfguard train --labels`` (see
        serving/labels.py for the columns and the phantom model's label), all unless ``limit``."""
        with rt.store.reader() as session:
            query = select(CountLabel).order_by(CountLabel.id)
            if limit is not None or format == "json":
                query = query.limit(limit or 1000)
            rows = list(session.scalars(query))
        if format == "json":
            return rows
        body = labels.to_bytes(labels.label_frame(rows), format)
        media = "application/vnd.apache.parquet" if format == "parquet" else "application/x-ndjson"
        return Response(
            body,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="labels.{format}"'},
        )

    @app.get("/exceptions", response_model=list[ExceptionOut], tags=["reconciliation"])
    def list_exceptions(
        _who: Reconciler,
        status: str | None = None,
        source: str | None = None,
        sku: str | None = None,
        location: str | None = None,
        limit: Limit = 100,
    ) -> list[ReconciliationException]:
        """Reconciliation exceptions (``shelfguard reconcile``), newest first."""
        with rt.store.reader() as session:
            query = select(ReconciliationException).order_by(ReconciliationException.id.desc())
            for column, value in (
                (ReconciliationException.status, status),
                (ReconciliationException.source, source),
                (ReconciliationException.sku, sku),
                (ReconciliationException.location, location),
            ):
                if value is not None:
                    query = query.where(column == value)
            return list(session.scalars(query.limit(limit)))

    @app.post("/users", response_model=UserOut, status_code=201, tags=["admin"])
    def add_user(body: UserIn, who: Admin) -> UserOut:
        """Create a user; the token is in the response and nowhere else."""
        now = rt.clock()
        with rt.store.transaction() as session:
            user, token = create_user(
                session, body.name, body.role, rt.settings.token_pepper.get_secret_value(), now
            )
            audit.append(
                session,
                at=now,
                actor=who.name,
                action="user.created",
                subject=f"user:{user.name}",
                payload={"role": user.role},
            )
        return UserOut(name=body.name, role=body.role, token=token)

    @app.post("/webhooks", response_model=WebhookOut, status_code=201, tags=["admin"])
    def add_webhook(body: WebhookIn, who: Admin) -> Webhook:
        now = rt.clock()
        with rt.store.transaction() as session:
            hook = Webhook(
                url=str(body.url), secret=body.secret, created_by=who.name, created_at=now
            )
            session.add(hook)
            session.flush()
            audit.append(
                session,
                at=now,
                actor=who.name,
                action="webhook.registered",
                subject=f"webhook:{hook.id}",
                payload={"url": hook.url},
            )
            return hook

    @app.get("/webhooks/deliveries", response_model=list[DeliveryOut], tags=["admin"])
    def list_deliveries(_who: Admin, limit: Limit = 100) -> list[WebhookDelivery]:
        with rt.store.reader() as session:
            query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
            return list(session.scalars(query))

    @app.get("/audit", response_model=list[AuditOut], tags=["audit"])
    def list_audit(_who: Admin, limit: Limit = 100) -> list[AuditEntry]:
        with rt.store.reader() as session:
            return list(
                session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit))
            )

    @app.get("/audit/verify", response_model=VerifyOut, tags=["audit"])
    def verify_audit(_who: Admin) -> VerifyOut:
        with rt.store.reader() as session:
            result = audit.verify(session)
        return VerifyOut(
            ok=result.ok,
            rows=result.rows,
            first_bad_seq=result.first_bad_seq,
            problem=result.problem,
        )

    @app.post("/admin/sweep", response_model=SweepOut, tags=["admin"])
    def sweep(_who: Admin) -> SweepOut:
        """Run the sweeper now: expiry of recommendations and holds, due webhook deliveries."""
        return rt.sweep()


def recommendation_out(session, rec: Recommendation) -> RecommendationOut:  # noqa: ANN001
    approvers = list(
        session.scalars(
            select(Approval.approver)
            .where(Approval.recommendation_id == rec.id)
            .order_by(Approval.id)
        )
    )
    out = RecommendationOut.model_validate(rec)
    return out.model_copy(update={"approvals": approvers})


def _sweeper(runtime: Runtime, stop: threading.Event) -> None:
    """Background loop of `serve`: sweep every ``background_interval_s`` until stopped."""
    import logging

    log = logging.getLogger("shelfguard.sweeper")
    while not stop.wait(runtime.settings.background_interval_s):
        try:
            runtime.sweep()
        except Exception:  # noqa: BLE001 - keep sweeping; the error is logged
            log.exception("sweep failed")


__all__ = ["Runtime", "create_app", "utc_now"]
