"""CSRF protection of the UI's forms: a POST must return the token the page issued to this
browser session (and this signed-in user), or it is refused with 403 and changes nothing. The
cookies stay SameSite=Strict and HttpOnly. (The real-browser test in test_ui_browser.py shows the
forms still work with the token.)"""

from __future__ import annotations

import pytest

from tests.serving.conftest import csrf_token_of_page, score_row


@pytest.fixture
def svc(make_service):
    svc = make_service()
    svc.post("/scores", "olga", {"scores": [score_row()]})
    return svc


def sign_in(svc, user: str) -> None:
    token = csrf_token_of_page(svc.client, "/ui/login")
    r = svc.client.post(
        "/ui/login", data={"token": svc.tokens[user], "csrf_token": token}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui", r.text


def hold_rec(svc) -> dict:
    recs = svc.get("/recommendations?state=pending", "ana").json()
    return next(r for r in recs if r["action"] == "lower_atp_exposure")


def test_decision_without_the_token_is_refused_and_changes_nothing(svc) -> None:
    sign_in(svc, "ana")
    rec = hold_rec(svc)
    form = {"decision": "approve", "version": rec["version"]}
    path = f"/ui/recommendations/{rec['id']}/decide"
    for csrf in (None, "", "0" * 64):
        data = form if csrf is None else {**form, "csrf_token": csrf}
        r = svc.client.post(path, data=data, follow_redirects=False)
        assert r.status_code == 403 and "CSRF" in r.text, (csrf, r.status_code)
    assert svc.get(f"/recommendations/{rec['id']}", "ana").json()["state"] == "pending"
    assert svc.get("/atp/SKU-1/S01", "olga").json()["risk_hold"] == 0

    good = {**form, "csrf_token": csrf_token_of_page(svc.client)}
    r = svc.client.post(path, data=good, follow_redirects=False)
    assert r.status_code == 303 and "applied" in r.headers["location"]
    assert svc.get("/atp/SKU-1/S01", "olga").json()["risk_hold"] == 40


def test_token_is_bound_to_the_session_and_the_user(svc) -> None:
    sign_in(svc, "ana")
    rec = hold_rec(svc)
    stolen = csrf_token_of_page(svc.client)
    path = f"/ui/recommendations/{rec['id']}/decide"
    form = {"decision": "approve", "version": rec["version"], "csrf_token": stolen}
    # same user, another browser session: the token of the first session does not work
    svc.client.cookies.set("shelfguard_session", "another-session")
    assert svc.client.post(path, data=form, follow_redirects=False).status_code == 403
    # same session id, another signed-in user (bert): not valid either
    svc.client.cookies.clear()
    sign_in(svc, "bert")
    bert_token = csrf_token_of_page(svc.client)
    session = svc.client.cookies.get("shelfguard_session")
    svc.client.cookies.set("shelfguard_token", svc.tokens["ana"])
    assert (
        svc.client.post(
            path, data={**form, "csrf_token": bert_token}, follow_redirects=False
        ).status_code
        == 403
    )
    assert svc.client.cookies.get("shelfguard_session") == session
    assert svc.get(f"/recommendations/{rec['id']}", "ana").json()["state"] == "pending"


def test_sign_in_needs_the_login_pages_token_and_starts_a_new_session(svc) -> None:
    r = svc.client.post("/ui/login", data={"token": svc.tokens["ana"]}, follow_redirects=False)
    assert r.status_code == 403 and "shelfguard_token" not in r.headers.get("set-cookie", "")
    token = csrf_token_of_page(svc.client, "/ui/login")
    before = svc.client.cookies.get("shelfguard_session")
    r = svc.client.post(
        "/ui/login", data={"token": svc.tokens["ana"], "csrf_token": token}, follow_redirects=False
    )
    assert r.status_code == 303
    cookies = r.headers.get_list("set-cookie")
    assert len(cookies) == 2
    for cookie in cookies:
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie, cookie
    after = svc.client.cookies.get("shelfguard_session")
    assert before and after and after != before  # no session fixation across sign-in


def test_count_and_sign_out_forms_need_the_token_too(svc) -> None:
    sign_in(svc, "olga")
    svc.post("/scores", "olga", {"scores": [score_row("SKU-7", phantom_score=0.95)]})
    (task,) = svc.get("/tasks?state=open", "olga").json()
    r = svc.client.post(
        f"/ui/tasks/{task['id']}/count", data={"counted_quantity": 0}, follow_redirects=False
    )
    assert r.status_code == 403
    assert svc.get("/tasks?state=open", "olga").json() == [task]
    assert svc.client.post("/ui/logout", follow_redirects=False).status_code == 403
    token = csrf_token_of_page(svc.client)
    r = svc.client.post(
        f"/ui/tasks/{task['id']}/count",
        data={"counted_quantity": 0, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "confirmed" in r.headers["location"]
    r = svc.client.post("/ui/logout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
