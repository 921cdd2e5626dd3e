"""Every state-changing endpoint refuses requests without a token (401) and from a role that
may not use it (403). The table below must list every POST route of the API: a new endpoint
without an entry fails ``test_table_covers_every_state_changing_route``."""

from __future__ import annotations

import pytest

from serving.auth import Role, hash_token
from tests.serving.conftest import USERS, csrf_token_of_page, score_row

# path -> (roles allowed besides admin, a valid body)
STATE_CHANGING = {
    "/scores": ({Role.OPS, Role.DATA_SCIENTIST}, {"scores": [score_row()]}),
    "/recommendations/{rec_id}/decision": ({Role.APPROVER}, {"decision": "approve"}),
    "/write-offs": ({Role.OPS}, {"sku": "SKU-1", "location": "S01", "units": 1, "reason": "x"}),
    "/tasks/{task_id}/count": ({Role.OPS}, {"counted_quantity": 1}),
    "/users": (set(), {"name": "newbie", "role": "ops"}),
    "/webhooks": (set(), {"url": "http://127.0.0.1:9/hook", "secret": "s" * 32}),
    "/admin/sweep": (set(), None),
}
USER_OF_ROLE = {role: name for name, role in USERS.items() if name != "bert"}


@pytest.fixture
def svc(make_service):
    return make_service()


def concrete(path: str) -> str:
    return path.replace("{rec_id}", "1").replace("{task_id}", "1")


def test_table_covers_every_state_changing_route(svc) -> None:
    spec = svc.client.get("/openapi.json").json()
    changing = {
        path
        for path, ops in spec["paths"].items()
        for method in ops
        if method in ("post", "put", "patch", "delete")
    }
    assert changing == set(STATE_CHANGING)


@pytest.mark.parametrize("path", sorted(STATE_CHANGING))
def test_no_token_is_401(svc, path) -> None:
    _roles, body = STATE_CHANGING[path]
    r = svc.client.post(concrete(path), json=body)
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "not_authenticated"
    r = svc.client.post(concrete(path), json=body, headers={"Authorization": "Bearer forged"})
    assert r.status_code == 401


@pytest.mark.parametrize("path", sorted(STATE_CHANGING))
def test_wrong_role_is_403(svc, path) -> None:
    allowed, body = STATE_CHANGING[path]
    wrong = [r for r in Role if r is not Role.ADMIN and r not in allowed]
    assert wrong
    for role in wrong:
        r = svc.post(concrete(path), USER_OF_ROLE[role], body)
        assert r.status_code == 403, (role, r.text)
        assert r.json()["error"] == "forbidden"


def test_admin_only_reads_are_guarded(svc) -> None:
    for path in ("/audit", "/audit/verify", "/webhooks/deliveries"):
        assert svc.client.get(path).status_code == 401
        assert svc.get(path, "olga").status_code == 403
        assert svc.get(path, "admin").status_code == 200
    assert svc.get("/labels", "olga").status_code == 403
    assert svc.get("/labels", "dana").status_code == 200


def test_tokens_are_stored_hashed(svc) -> None:
    from sqlalchemy import select

    from serving.store.tables import User

    with svc.runtime.store.reader() as session:
        hashes = set(session.scalars(select(User.token_hash)))
    pepper = svc.settings.token_pepper.get_secret_value()
    for token in svc.tokens.values():
        assert token not in hashes
        assert hash_token(token, pepper) in hashes


def test_ui_actions_need_a_signed_in_user_with_the_right_role(svc) -> None:
    svc.post("/scores", "olga", {"scores": [score_row()]})
    r = svc.client.post(
        "/ui/recommendations/1/decide",
        data={"decision": "approve", "version": 1},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    svc.client.cookies.set("shelfguard_token", svc.tokens["olga"])
    form = {"decision": "approve", "version": 1, "csrf_token": csrf_token_of_page(svc.client)}
    r = svc.client.post("/ui/recommendations/1/decide", data=form)
    assert "may not do this" in r.text
    assert svc.get("/recommendations/1", "olga").json()["state"] == "pending"
    svc.client.cookies.clear()
