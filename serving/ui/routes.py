"""UI routes under ``/ui``. Sign-in stores the API token in an HttpOnly, SameSite=Strict cookie;
every form carries a per-session CSRF token (:mod:`serving.ui.csrf`) that each POST must return
(403 otherwise); every action goes through the same service calls and role checks as the API.
Errors are shown on the page, never as a stack trace."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from serving.auth import COOKIE, Principal, Role, authenticate, authorize
from serving.effects import current_atp
from serving.errors import NotAuthenticated, ShelfguardError
from serving.store.tables import (
    Alert,
    Approval,
    CountTask,
    Recommendation,
    ReconciliationException,
)
from serving.ui import csrf
from serving.workflow import Decision, RecState

if TYPE_CHECKING:
    from serving.api import Runtime

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
#: the form field ``csrf.FIELD``; empty when missing, which the check refuses
CsrfField = Annotated[str, Form(max_length=200)]


#: what an approver's queue shows: the first 100 pending recommendations by priority
PENDING_QUEUE = (
    select(Recommendation)
    .where(Recommendation.state == RecState.PENDING.value)
    .order_by(Recommendation.priority.desc(), Recommendation.id)
    .limit(100)
)


def _fingerprint(queue: list[Recommendation], newest_alert_id: int) -> dict:
    """What a page shows, in brief: the queue's ids and versions and the newest alert id. The
    page keeps it (``data-queue`` / ``data-alert``) and compares it with ``GET /ui/changes``."""
    return {"queue": ",".join(f"{r.id}.{r.version}" for r in queue), "alert": newest_alert_id}


def _changes(session: Session, user: Principal) -> dict:
    """The fingerprint of the page ``user`` would see now, without rendering it."""
    queue = []
    if user.role in (Role.APPROVER, Role.ADMIN):
        queue = list(session.scalars(PENDING_QUEUE))
    newest = session.scalar(select(func.max(Alert.id)))
    return _fingerprint(queue, newest or 0)


def ui_router(rt: Runtime) -> APIRouter:  # noqa: C901 - a flat list of routes
    router = APIRouter(prefix="/ui", include_in_schema=False)
    pepper = rt.settings.token_pepper.get_secret_value()

    def who(request: Request) -> Principal | None:
        with rt.store.reader() as session:
            try:
                return authenticate(session, request.cookies.get(COOKIE), pepper)
            except NotAuthenticated:
                return None

    def back(message: str, error: bool = False) -> RedirectResponse:
        kind = "error" if error else "msg"
        return RedirectResponse(f"/ui?{kind}={quote(message)}", status_code=303)

    def session_id(request: Request) -> tuple[str, bool]:
        """The browser session's id and whether it is new (then the response must set it)."""
        current = request.cookies.get(csrf.SESSION_COOKIE)
        return (current, False) if current else (csrf.new_session_id(), True)

    def set_session(response: Response, sid: str) -> None:
        response.set_cookie(csrf.SESSION_COOKIE, sid, httponly=True, samesite="strict")

    def csrf_ok(request: Request, submitted: str, signed_in: bool = True) -> bool:
        api_token = request.cookies.get(COOKIE) if signed_in else None
        sid = request.cookies.get(csrf.SESSION_COOKIE)
        return csrf.is_valid(sid, api_token, submitted, pepper)

    def refused(request: Request) -> Response:
        return TEMPLATES.TemplateResponse(
            request,
            "refused.html",
            {"reason": "The form was not issued to this session (CSRF check failed)."},
            status_code=403,
        )

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, error: str | None = None) -> Response:
        sid, new = session_id(request)
        response = TEMPLATES.TemplateResponse(
            request,
            "login.html",
            {"error": error, "csrf_token": csrf.token_for(sid, None, pepper)},
        )
        if new:
            set_session(response, sid)
        return response

    @router.post("/login")
    def login(
        request: Request, token: Annotated[str, Form(max_length=200)], csrf_token: CsrfField = ""
    ) -> Response:
        if not csrf_ok(request, csrf_token, signed_in=False):
            return refused(request)
        with rt.store.reader() as session:
            try:
                authenticate(session, token.strip(), pepper)
            except NotAuthenticated:
                return RedirectResponse("/ui/login?error=unknown+token", status_code=303)
        response = RedirectResponse("/ui", status_code=303)
        response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict")
        set_session(response, csrf.new_session_id())  # a fresh session at sign-in
        return response

    @router.post("/logout")
    def logout(request: Request, csrf_token: CsrfField = "") -> Response:
        if not csrf_ok(request, csrf_token):
            return refused(request)
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE)
        response.delete_cookie(csrf.SESSION_COOKIE)
        return response

    @router.get("", response_class=HTMLResponse)
    def home(request: Request, msg: str | None = None, error: str | None = None) -> Response:
        user = who(request)
        if user is None:
            return RedirectResponse("/ui/login", status_code=303)
        sid, new_session = session_id(request)
        now = rt.clock()
        sees_queue = user.role in (Role.APPROVER, Role.ADMIN)
        sees_ops = user.role in (Role.OPS, Role.ADMIN, Role.DATA_SCIENTIST)
        sees_exceptions = user.role in (Role.OPS, Role.APPROVER, Role.ADMIN)
        with rt.store.reader() as session:
            alerts = list(session.scalars(select(Alert).order_by(Alert.id.desc()).limit(50)))
            tasks = list(
                session.scalars(
                    select(CountTask).where(CountTask.state == "open").order_by(CountTask.id)
                )
            )
            queue = []
            pending = list(session.scalars(PENDING_QUEUE)) if sees_queue else []
            for rec in pending:
                alert = session.get(Alert, rec.alert_id) if rec.alert_id else None
                approvers = list(
                    session.scalars(
                        select(Approval.approver).where(Approval.recommendation_id == rec.id)
                    )
                )
                queue.append(
                    {
                        "rec": rec,
                        "alert": alert,
                        "approvers": approvers,
                        "atp": current_atp(session, rec.sku, rec.location, now),
                    }
                )
            recent = list(
                session.scalars(
                    select(Recommendation)
                    .where(Recommendation.state != RecState.PENDING.value)
                    .order_by(Recommendation.decided_at.desc(), Recommendation.id.desc())
                    .limit(20)
                )
            )
            recent_rows = [
                {"rec": r, "atp": current_atp(session, r.sku, r.location, now)} for r in recent
            ]
            exceptions = []
            if sees_exceptions:
                exceptions = list(
                    session.scalars(
                        select(ReconciliationException)
                        .where(ReconciliationException.status == "open")
                        .order_by(ReconciliationException.id.desc())
                        .limit(100)
                    )
                )
        response = TEMPLATES.TemplateResponse(
            request,
            "home.html",
            {
                "user": user,
                "alerts": alerts,
                "tasks": tasks,
                "queue": queue,
                "recent": recent_rows,
                "sees_queue": sees_queue,
                "sees_ops": sees_ops,
                "sees_exceptions": sees_exceptions,
                "exceptions": exceptions,
                "msg": msg,
                "error": error,
                "policy_version": rt.policy.version,
                "csrf_token": csrf.token_for(sid, request.cookies.get(COOKIE), pepper),
                "changes": _fingerprint(pending, alerts[0].id if alerts else 0),
                "refresh_ms": int(rt.settings.ui_refresh_s * 1000),
            },
        )
        if new_session:
            set_session(response, sid)
        return response

    @router.get("/changes")
    def changes(request: Request) -> Response:
        """What the open page polls: the pending recommendations' ids and versions and the newest
        alert id. The page compares them with what it shows (``data-queue`` / ``data-alert``)."""
        user = who(request)
        if user is None:
            return JSONResponse({"detail": "sign in again"}, status_code=401)
        with rt.store.reader() as session:
            return JSONResponse(_changes(session, user))

    @router.post("/recommendations/{rec_id}/decide")
    def decide(
        request: Request,
        rec_id: int,
        decision: Annotated[Decision, Form()],
        version: Annotated[int, Form(ge=1)],
        reason: Annotated[str, Form(max_length=2000)] = "",
        csrf_token: CsrfField = "",
    ) -> Response:
        user = who(request)
        if user is None:
            return RedirectResponse("/ui/login", status_code=303)
        if not csrf_ok(request, csrf_token):
            return refused(request)
        try:
            authorize(user, frozenset({Role.APPROVER}))
            rec = rt.service.decide(rec_id, user.name, decision, reason or None, version)
        except ShelfguardError as exc:
            return back(exc.detail, error=True)
        return back(f"recommendation {rec_id}: {rec.state}")

    @router.post("/tasks/{task_id}/count")
    def count(
        request: Request,
        task_id: int,
        counted_quantity: Annotated[int, Form(ge=0)],
        csrf_token: CsrfField = "",
    ) -> Response:
        user = who(request)
        if user is None:
            return RedirectResponse("/ui/login", status_code=303)
        if not csrf_ok(request, csrf_token):
            return refused(request)
        try:
            authorize(user, frozenset({Role.OPS}))
            result = rt.service.complete_count(task_id, user.name, counted_quantity, None)
        except ShelfguardError as exc:
            return back(exc.detail, error=True)
        return back(f"count task {task_id}: {result.outcome.replace('_', ' ')}")

    return router
