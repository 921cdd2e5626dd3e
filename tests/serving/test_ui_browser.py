"""The web UI in a real headless browser (Debian's chromium driven by Playwright) against a
real `shelfguard serve` process: an approver signs in, approves a recommendation, and the ATP
the page shows changes."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import REPO, score_row

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path):
    shelfguard = str(REPO / ".venv" / "bin" / "shelfguard")
    url = f"sqlite:///{tmp_path}/ui.db"
    env = {
        **os.environ,
        "SHELFGUARD_KAFKA_BOOTSTRAP": "",
        "SHELFGUARD_DATABASE_URL": url,
        "SHELFGUARD_UI_REFRESH_S": "1",
    }
    tokens = {}
    for name, role in (("olga", "ops"), ("ana", "approver")):
        done = subprocess.run(
            [shelfguard, "users", "create", name, "--role", role],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        tokens[name] = done.stdout.strip().splitlines()[-1]
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603
        [shelfguard, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (
            tmp_path / "serve.log"
        ).read_text()
        time.sleep(0.2)
    yield base, tokens
    proc.terminate()
    proc.wait(timeout=20)


def test_approver_approves_in_the_browser_and_atp_changes(server, tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, tokens = server
    r = httpx.post(
        f"{base}/scores",
        json={"scores": [score_row()]},
        headers={"Authorization": f"Bearer {tokens['olga']}"},
    )
    assert r.status_code == 200, r.text
    hold = next(
        x
        for x in httpx.get(
            f"{base}/recommendations", headers={"Authorization": f"Bearer {tokens['ana']}"}
        ).json()
        if x["action"] == "lower_atp_exposure"
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.goto(f"{base}/ui")
        expect(page).to_have_url(f"{base}/ui/login")
        page.fill("#token", tokens["ana"])
        page.click("#sign-in")
        expect(page.locator("#who")).to_have_text("ana")
        row = page.locator(f"#rec-{hold['id']}")
        expect(row).to_contain_text("pick shorts")  # the explanation is shown
        expect(page.get_by_test_id(f"atp-{hold['id']}")).to_have_text("35")
        page.click(f"#approve-{hold['id']}")
        expect(page.get_by_role("status")).to_contain_text(f"recommendation {hold['id']}: applied")
        expect(page.locator(f"#rec-{hold['id']}")).to_have_count(0)
        expect(page.get_by_test_id(f"atp-now-{hold['id']}")).to_have_text("0")
        page.screenshot(path=str(tmp_path / "approved.png"), full_page=True)
        # rejecting without a reason is refused on the page, with nothing changed
        other = page.locator("#queue tr[data-action]").first
        other_id = other.get_attribute("id").removeprefix("rec-")
        page.click(f"#reject-{other_id}")
        expect(page.get_by_role("alert")).to_contain_text("reason is required")
        expect(page.locator(f"#rec-{other_id}")).to_have_count(1)
        # a new recommendation appears on the open page by itself (the page polls /ui/changes)
        page.goto(f"{base}/ui")
        fresh = httpx.post(
            f"{base}/scores",
            json={"scores": [score_row("SKU-LIVE")]},
            headers={"Authorization": f"Bearer {tokens['olga']}"},
        )
        assert fresh.status_code == 200, fresh.text
        live = next(
            x["id"]
            for x in httpx.get(
                f"{base}/recommendations?state=pending",
                headers={"Authorization": f"Bearer {tokens['ana']}"},
            ).json()
            if x["sku"] == "SKU-LIVE"
        )
        expect(page.locator(f"#rec-{live}")).to_have_count(1, timeout=20_000)
        # ... but not while the approver is typing a reason: then a banner says so
        reason = page.locator(f"#rec-{live} input[name=reason]")
        reason.fill("checking the shelf")
        assert httpx.post(
            f"{base}/scores",
            json={"scores": [score_row("SKU-LIVE-2")]},
            headers={"Authorization": f"Bearer {tokens['olga']}"},
        ).json()["alerts"]
        expect(page.locator("#changed")).to_be_visible(timeout=20_000)
        expect(reason).to_have_value("checking the shelf")
        browser.close()
    atp = httpx.get(f"{base}/atp/SKU-1/S01", headers={"Authorization": f"Bearer {tokens['olga']}"})
    assert atp.json()["atp"] == 0
