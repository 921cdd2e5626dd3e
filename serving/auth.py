"""Users, roles and API tokens.

Tokens are random 256-bit strings shown once at creation; the database keeps only
HMAC-SHA256(token_pepper, token), so a copy of the database does not yield usable tokens. A
request authenticates with ``Authorization: Bearer <token>`` (API) or the ``shelfguard_token``
cookie (web UI). No token, or an unknown one: 401. A known user whose role is not allowed: 403.
``admin`` is allowed everywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.errors import Conflict, Forbidden, NotAuthenticated
from serving.store.tables import User

COOKIE = "shelfguard_token"


class Role(StrEnum):
    OPS = "ops"
    APPROVER = "approver"
    DATA_SCIENTIST = "data_scientist"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role


def hash_token(token: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), token.encode(), hashlib.sha256).hexdigest()


def create_user(
    session: Session, name: str, role: Role, pepper: str, now: datetime
) -> tuple[User, str]:
    """Create a user with a fresh token; returns (user, token). The token is not recoverable."""
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise Conflict(f"user {name!r} already exists; pick another name")
    token = secrets.token_urlsafe(32)
    user = User(name=name, role=role.value, token_hash=hash_token(token, pepper), created_at=now)
    session.add(user)
    session.flush()
    return user, token


def authenticate(session: Session, token: str | None, pepper: str) -> Principal:
    if not token:
        raise NotAuthenticated("no API token: send 'Authorization: Bearer <token>'")
    user = session.scalar(select(User).where(User.token_hash == hash_token(token, pepper)))
    if user is None:
        raise NotAuthenticated("unknown API token; ask an admin for a new one")
    return Principal(user.name, Role(user.role))


def authorize(principal: Principal, allowed: frozenset[Role]) -> Principal:
    if principal.role is Role.ADMIN or principal.role in allowed:
        return principal
    raise Forbidden(
        f"role {principal.role.value} may not do this; needs one of "
        f"{', '.join(sorted(r.value for r in allowed | {Role.ADMIN}))}"
    )
