"""Webhooks over real HTTP: a receiver on 127.0.0.1 (http.server in a thread) that is down at
first (connection refused), then up but failing once (503), then accepting. The service's real
sender (httpx) delivers; the receiver checks the HMAC signature over the exact bytes it got; the
retries follow the backoff on the injected clock; the delivery log shows every step."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.serving.conftest import score_row

SECRET = "whsec-real-http-" + "x" * 16


class Receiver:
    """A webhook subscriber: answers the queued statuses (then 200) and keeps what it got."""

    def __init__(self, port: int, statuses: list[int]) -> None:
        self.port = port
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes, bool]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                stamp = headers.get("x-shelfguard-timestamp", "")
                expected = hmac.new(
                    SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256
                ).hexdigest()
                valid = hmac.compare_digest(
                    headers.get("x-shelfguard-signature", ""), f"sha256={expected}"
                )
                receiver.received.append((headers, body, valid))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status if valid else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    yield free  # nothing listens on it until a Receiver binds it


def test_delivery_over_real_http_with_refusal_retry_and_signature(make_service, port) -> None:
    svc = make_service(webhook_backoff_s=30, webhook_max_attempts=4, webhook_timeout_s=5)
    url = f"http://127.0.0.1:{port}/hooks/shelfguard"
    assert svc.post("/webhooks", "admin", {"url": url, "secret": SECRET}).status_code == 201
    alert_id = svc.post("/scores", "olga", {"scores": [score_row()]}).json()["alerts"][0]

    # 1: the receiver is down: connection refused, retry in 30 s
    assert svc.post("/admin/sweep", "admin").json()["webhook_attempts"] == 1
    (log,) = svc.get("/webhooks/deliveries", "admin").json()
    assert (log["state"], log["attempts"], log["last_status"]) == ("pending", 1, None)
    assert "ConnectError" in log["last_error"]
    first_retry = svc.clock.now + timedelta(seconds=30)
    assert datetime.fromisoformat(log["next_attempt_at"]) == first_retry

    receiver = Receiver(port, statuses=[503])
    try:
        svc.clock.advance(seconds=29)
        assert svc.post("/admin/sweep", "admin").json()["webhook_attempts"] == 0  # not yet due
        assert receiver.received == []
        # 2: up, but answers 503: retry in 60 s (backoff doubles)
        svc.clock.advance(seconds=1)
        assert svc.clock.now == first_retry
        assert svc.post("/admin/sweep", "admin").json()["webhook_attempts"] == 1
        (log,) = svc.get("/webhooks/deliveries", "admin").json()
        assert (log["state"], log["attempts"], log["last_status"]) == ("pending", 2, 503)
        assert log["last_error"] == "HTTP 503"
        assert datetime.fromisoformat(log["next_attempt_at"]) == first_retry + timedelta(seconds=60)
        svc.clock.advance(seconds=59)
        assert svc.post("/admin/sweep", "admin").json()["webhook_attempts"] == 0
        # 3: delivered
        svc.clock.advance(seconds=1)
        assert svc.post("/admin/sweep", "admin").json()["webhook_attempts"] == 1
        assert svc.post("/admin/sweep", "admin").json()["webhook_attempts"] == 0  # done
    finally:
        receiver.close()

    (log,) = svc.get("/webhooks/deliveries", "admin").json()
    assert (log["state"], log["attempts"], log["last_status"], log["last_error"]) == (
        "delivered",
        3,
        200,
        None,
    )
    assert datetime.fromisoformat(log["delivered_at"]) == svc.clock.now

    assert len(receiver.received) == 2  # the refused attempt never reached it
    for headers, body, valid in receiver.received:
        assert valid, headers  # HMAC over "<timestamp>.<body>" with the shared secret
        assert headers["x-shelfguard-event"] == "alert.raised"
        assert headers["x-shelfguard-delivery"] == str(log["id"])  # same id on every retry
        assert headers["content-type"] == "application/json"
        payload = json.loads(body)
        assert (payload["alert_id"], payload["sku"], payload["location"]) == (
            alert_id,
            "SKU-1",
            "S01",
        )
    stamps = [int(h["x-shelfguard-timestamp"]) for h, _b, _v in receiver.received]
    assert stamps[1] - stamps[0] == 60  # the clock's time at each attempt
    assert receiver.received[0][1] == receiver.received[1][1]  # the same bytes each time
    metrics = svc.client.get("/metrics").text
    assert "shelfguard_webhook_failures_total 2.0" in metrics


def test_wrong_secret_is_rejected_by_the_receiver(make_service, port) -> None:
    """The receiver's check is real: a webhook registered with another secret fails it."""
    svc = make_service(webhook_backoff_s=0, webhook_max_attempts=1)
    receiver = Receiver(port, statuses=[])
    try:
        svc.post(
            "/webhooks",
            "admin",
            {"url": f"http://127.0.0.1:{port}/h", "secret": "not-the-shared-secret-at-all"},
        )
        svc.post("/scores", "olga", {"scores": [score_row()]})
        assert svc.post("/admin/sweep", "admin").json()["webhook_attempts"] == 1
    finally:
        receiver.close()
    (log,) = svc.get("/webhooks/deliveries", "admin").json()
    assert (log["state"], log["last_status"]) == ("dead", 401)
    assert [valid for _h, _b, valid in receiver.received] == [False]
