"""UI routes under ``/ui``. Sign-in stores the API token in an HttpOnly, SameSite=Strict cookie
(so other sites cannot post forms with it); every action goes through the same service calls
and role checks as the API. Errors are shown on the page, never as a stack trace."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from serving.auth import COOKIE, Principal, Role, authenticate, authorize
from serving.effects import current_atp
from serving.errors import NotAuthenticated, ShelfguardError
from serving.store.tables import Alert, Approval, CountTask, Recommendation
from serving.workflow import Decision, RecState

if TYPE_CHECKING:
    from serving.api import Runtime

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))


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

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, error: str | None = None) -> Response:
        return TEMPLATES.TemplateResponse(request, "login.html", {"error": error})

    @router.post("/login")
    def login(token: Annotated[str, Form(max_length=200)]) -> Response:
        with rt.store.reader() as session:
            try:
                authenticate(session, token.strip(), pepper)
            except NotAuthenticated:
                return RedirectResponse("/ui/login?error=unknown+token", status_code=303)
        response = RedirectResponse("/ui", status_code=303)
        response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict")
        return response

    @router.post("/logout")
    def logout() -> Response:
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @router.get("", response_class=HTMLResponse)
    def home(request: Request, msg: str | None = None, error: str | None = None) -> Response:
        user = who(request)
        if user is None:
            return RedirectResponse("/ui/login", status_code=303)
        now = rt.clock()
        sees_queue = user.role in (Role.APPROVER, Role.ADMIN)
        sees_ops = user.role in (Role.OPS, Role.ADMIN, Role.DATA_SCIENTIST)
        with rt.store.reader() as session:
            alerts = list(session.scalars(select(Alert).order_by(Alert.id.desc()).limit(50)))
            tasks = list(
                session.scalars(
                    select(CountTask).where(CountTask.state == "open").order_by(CountTask.id)
                )
            )
            queue = []
            if sees_queue:
                pending = session.scalars(
                    select(Recommendation)
                    .where(Recommendation.state == RecState.PENDING.value)
                    .order_by(Recommendation.priority.desc(), Recommendation.id)
                    .limit(100)
                )
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
        return TEMPLATES.TemplateResponse(
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
                "msg": msg,
                "error": error,
                "policy_version": rt.policy.version,
            },
        )

    @router.post("/recommendations/{rec_id}/decide")
    def decide(
        request: Request,
        rec_id: int,
        decision: Annotated[Decision, Form()],
        version: Annotated[int, Form(ge=1)],
        reason: Annotated[str, Form(max_length=2000)] = "",
    ) -> Response:
        user = who(request)
        if user is None:
            return RedirectResponse("/ui/login", status_code=303)
        try:
            authorize(user, frozenset({Role.APPROVER}))
            rec = rt.service.decide(rec_id, user.name, decision, reason or None, version)
        except ShelfguardError as exc:
            return back(exc.detail, error=True)
        return back(f"recommendation {rec_id}: {rec.state}")

    @router.post("/tasks/{task_id}/count")
    def count(
        request: Request, task_id: int, counted_quantity: Annotated[int, Form(ge=0)]
    ) -> Response:
        user = who(request)
        if user is None:
            return RedirectResponse("/ui/login", status_code=303)
        try:
            authorize(user, frozenset({Role.OPS}))
            result = rt.service.complete_count(task_id, user.name, counted_quantity, None)
        except ShelfguardError as exc:
            return back(exc.detail, error=True)
        return back(f"count task {task_id}: {result.outcome.replace('_', ' ')}")

    return router
