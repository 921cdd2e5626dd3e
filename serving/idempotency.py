"""``Idempotency-Key`` on POST requests.

Contract: a POST carrying ``Idempotency-Key: <k>`` (1–200 printable characters) is executed at
most once per (caller credential, k). Its response (any status below 500) is stored; a repeat
with the same method, path and body gets the stored response back with
``Idempotency-Replayed: true``; a repeat with a different request gets 422. 5xx responses are
not stored, so a retry after a server or broker failure runs again. The scope is a hash of the
``Authorization`` header (or the UI cookie), so two callers never share keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from serving.auth import COOKIE
from serving.store.db import Store
from serving.store.tables import IdempotentResponse

HEADER = "Idempotency-Key"


class IdempotencyMiddleware(BaseHTTPMiddleware):
    def __init__(self, app, store: Store, clock: Callable) -> None:  # noqa: ANN001 - ASGI app
        super().__init__(app)
        self.store = store
        self.clock = clock

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        key = request.headers.get(HEADER)
        if request.method != "POST" or key is None:
            return await call_next(request)
        if not (1 <= len(key) <= 200) or not key.isprintable():
            return JSONResponse(
                {"error": "invalid_request", "detail": f"{HEADER} must be 1-200 printable chars"},
                status_code=422,
            )
        credential = request.headers.get("authorization") or request.cookies.get(COOKIE) or ""
        scope = hashlib.sha256(credential.encode()).hexdigest()
        body = await request.body()
        fingerprint = hashlib.sha256(
            request.method.encode() + b" " + request.url.path.encode() + b"\n" + body
        ).hexdigest()
        try:
            stored = await run_in_threadpool(self._lookup, scope, key)
        except OperationalError:
            from serving.api import database_unavailable

            return database_unavailable()
        if stored is not None:
            if stored.request_hash != fingerprint:
                return JSONResponse(
                    {
                        "error": "invalid_request",
                        "detail": f"{HEADER} {key!r} was already used for a different request; "
                        "use a new key for a new request",
                    },
                    status_code=422,
                )
            return Response(
                stored.body,
                status_code=stored.status,
                media_type=stored.content_type,
                headers={"Idempotency-Replayed": "true"},
            )
        response = await call_next(request)
        if response.status_code >= 500:
            return response
        chunks = [chunk async for chunk in response.body_iterator]  # type: ignore[attr-defined]
        content = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks)
        content_type = response.headers.get("content-type", "application/json")
        await run_in_threadpool(
            self._save, scope, key, fingerprint, response.status_code, content, content_type
        )
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return Response(content, status_code=response.status_code, headers=headers)

    def _lookup(self, scope: str, key: str) -> IdempotentResponse | None:
        with self.store.reader() as session:
            return session.scalar(
                select(IdempotentResponse).where(
                    IdempotentResponse.scope == scope, IdempotentResponse.key == key
                )
            )

    def _save(
        self, scope: str, key: str, fingerprint: str, status: int, body: bytes, content_type: str
    ) -> None:
        try:
            with self.store.transaction() as session:
                session.add(
                    IdempotentResponse(
                        scope=scope,
                        key=key,
                        request_hash=fingerprint,
                        status=status,
                        body=body.decode("utf-8", errors="replace"),
                        content_type=content_type,
                        created_at=self.clock(),
                    )
                )
        except IntegrityError:
            pass  # a concurrent request with the same key stored its response first
        except OperationalError:
            pass  # the database went away after the request's own commit: answer it unstored
