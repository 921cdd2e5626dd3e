"""A webhook receiver that is down, then back, behind a running ``shelfguard serve``.

End to end: the service process's own sweeper delivers on the real clock. The receiver (an
``http.server`` on 127.0.0.1) is not listening while the first attempts are made (connection
refused), then comes up answering 503 twice (still warming up), then accepts. Every alert is
eventually delivered exactly once per alert id, every request carries a valid signature, and
the delivery log shows the failed attempts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.chaos.conftest import free_port, score_row, start_service
from tests.chaos.figures import report
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

SECRET = "chaos-webhook-secret-" + "k" * 16
ALERTS = 12
WARMING_UP = 2  # requests answered 503 once the receiver is listening
MIN_REFUSED = 3  # attempts every delivery must have failed before the receiver comes up


class Receiver:
    """Checks each request's signature; answers 503 to the first ``warming_up``, then 200."""

    def __init__(self, port: int, warming_up: int) -> None:
        self.requests: list[tuple[dict[str, str], bytes, bool, int]] = []
        self.warming_up = warming_up
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                stamp = headers.get("x-shelfguard-timestamp", "")
                mac = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
                valid = hmac.compare_digest(
                    headers.get("x-shelfguard-signature", ""), f"sha256={mac.hexdigest()}"
                )
                with receiver.lock:
                    status = 401 if not valid else 503 if receiver.warming_up > 0 else 200
                    receiver.warming_up -= status == 503
                    receiver.requests.append((headers, body, valid, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def accepted(self) -> list[dict]:
        return [json.loads(body) for _h, body, _v, status in self.requests if status == 200]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_receiver_down_then_back_gets_every_alert_once(processes, tmp_path):
    started = time.monotonic()
    service = start_service(
        processes,
        f"sqlite:///{tmp_path}/webhooks.db",
        {"admin": "admin", "olga": "ops"},
        background_interval_s="0.2",
        webhook_backoff_s="0.25",
        webhook_max_attempts="10",
        webhook_timeout_s="2",
    )
    port = free_port()  # nothing listens here yet: connection refused
    admin = service.headers("admin")
    with service.client() as c:
        hook = c.post(
            "/webhooks", json={"url": f"http://127.0.0.1:{port}/hook", "secret": SECRET},
            headers=admin,
        )  # fmt: skip
        assert hook.status_code == 201, hook.text
        ingest = c.post(
            "/scores",
            json={"scores": [score_row(f"SKU-H{i:03d}") for i in range(ALERTS)]},
            headers=service.headers("olga"),
        )
        assert ingest.status_code == 200, ingest.text
        alert_ids = ingest.json()["alerts"]
        assert len(alert_ids) == ALERTS
        ingested_at = time.monotonic()

        def deliveries() -> list[dict]:
            return c.get("/webhooks/deliveries?limit=1000", headers=admin).json()

        while_down = wait_until(
            lambda: (
                (d := deliveries())
                and len(d) == ALERTS
                and all(x["attempts"] >= MIN_REFUSED for x in d)
                and d
            ),
            timeout=60,
            what=f"{MIN_REFUSED} refused attempts per delivery",
        )
        down_for = time.monotonic() - ingested_at
        receiver = Receiver(port, WARMING_UP)
        up_at = time.monotonic()
        try:
            final = wait_until(
                lambda: (d := deliveries()) and all(x["state"] == "delivered" for x in d) and d,
                timeout=90,
                what="every delivery to succeed",
                explain=lambda: Counter(x["state"] for x in deliveries()),
            )
            all_delivered_s = time.monotonic() - up_at
            time.sleep(1.5)  # a late duplicate, if the sweeper sent one, would arrive now
            metrics = c.get("/metrics").text
            after = deliveries()
        finally:
            receiver.close()

    accepted = receiver.accepted()
    per_alert = Counter(body["alert_id"] for body in accepted)
    delivery_ids = Counter(h["x-shelfguard-delivery"] for h, _b, _v, s in receiver.requests
                           if s == 200)  # fmt: skip
    statuses = Counter(s for _h, _b, _v, s in receiver.requests)
    failed_attempts = sum(x["attempts"] for x in final) - len(final)
    refused = [x for x in while_down if x["last_error"] and "Connect" in x["last_error"]]
    figures = {
        "alerts raised / webhook deliveries": f"{len(alert_ids)} / {len(final)}",
        "receiver down after the alerts were raised s": round(down_for, 1),
        "attempts per delivery while down": dict(Counter(x["attempts"] for x in while_down)),
        "delivery log while down (last_error)": (while_down[0]["last_error"] or "")[:80],
        "receiver up: requests by status": dict(statuses),
        "all delivered after the receiver came up s": round(all_delivered_s, 1),
        "attempts per delivery in the log (final)": dict(Counter(x["attempts"] for x in final)),
        "failed attempts: delivery log / shelfguard_webhook_failures_total": f"{failed_attempts}"
        f" / {metric(metrics, 'shelfguard_webhook_failures_total'):.0f}",
        "alerts accepted by the receiver: distinct / twice / missing": f"{len(per_alert)} / "
        f"{sum(1 for n in per_alert.values() if n > 1)} / {len(set(alert_ids) - set(per_alert))}",
        "requests with a bad signature": sum(not v for _h, _b, v, _s in receiver.requests),
        "dead deliveries": sum(x["state"] == "dead" for x in after),
        "test wall time s": round(time.monotonic() - started, 1),
    }
    report("webhook_receiver_down", "webhook receiver refusing connections, then 503 x2, then up",
           figures)  # fmt: skip

    assert len(refused) == ALERTS  # the log shows why they failed
    assert sorted(per_alert) == sorted(alert_ids) and set(per_alert.values()) == {1}
    assert set(delivery_ids.values()) == {1} and len(delivery_ids) == ALERTS
    assert all(v for _h, _b, v, _s in receiver.requests)
    assert statuses[503] == WARMING_UP and statuses[200] == ALERTS and 401 not in statuses
    assert all(x["attempts"] >= MIN_REFUSED + 1 for x in final)
    # every failed attempt is in the log: the refused ones, then the receiver's two 503s
    assert len(receiver.requests) == WARMING_UP + ALERTS
    assert failed_attempts - WARMING_UP >= ALERTS * MIN_REFUSED
    assert metric(metrics, "shelfguard_webhook_failures_total") == failed_attempts
    assert after == final and all(x["state"] == "delivered" for x in after)
    assert all(x["last_status"] == 200 and x["last_error"] is None for x in final)
    assert httpx.get(f"{service.base}/healthz").status_code == 200
