"""CSRF protection of the UI's forms (synchroniser token, bound to the browser session).

A browser session is a random id in the ``shelfguard_session`` cookie (HttpOnly,
SameSite=Strict), issued by the sign-in page and replaced at sign-in (so a session id planted
before sign-in is worthless after it). Every form carries
``csrf_token = HMAC-SHA256(token_pepper, "csrf|" + session id + "|" + sha256(API token))``
(the API token is the sign-in cookie's; ``"login"`` before sign-in). A POST whose field does not
match the cookies is refused with 403 before anything else happens. Another site can neither
read the token nor compute it (it needs the pepper), and SameSite=Strict keeps the cookies off
its requests in the first place; the two defences are independent.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SESSION_COOKIE = "shelfguard_session"
FIELD = "csrf_token"
_BEFORE_SIGN_IN = "login"


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def token_for(session_id: str, api_token: str | None, pepper: str) -> str:
    bound = hashlib.sha256(api_token.encode()).hexdigest() if api_token else _BEFORE_SIGN_IN
    message = f"csrf|{session_id}|{bound}".encode()
    return hmac.new(pepper.encode(), message, hashlib.sha256).hexdigest()


def is_valid(
    session_id: str | None, api_token: str | None, submitted: str | None, pepper: str
) -> bool:
    if not session_id or not submitted:
        return False
    return hmac.compare_digest(token_for(session_id, api_token, pepper), submitted)
