"""The demo's side of the service, over HTTP: the file-mode score feed (``POST /scores``), and a
monitor that reads alerts, the approval queue and count tasks and measures event-to-alert
latency against the replay's release times."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.demo_replay import ReleaseIndex, parse_ts


class ScoreFeedRefused(RuntimeError):
    """The service refused a batch of scores as invalid (a 4xx): the feed stops."""


class Api:
    def __init__(self, base: str, tokens: dict[str, str]) -> None:
        import httpx

        self.base = base
        self.tokens = tokens
        self.http = httpx.Client(base_url=base, timeout=30)

    def get(self, path: str, user: str = "alice", **params: Any) -> Any:
        response = self.http.get(path, params=params, headers=self._auth(user))
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any, user: str) -> Any:
        return self.http.post(path, json=body, headers=self._auth(user))

    def _auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def ready(self) -> bool:
        import httpx

        try:
            return self.http.get("/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self.http.close()


@dataclass
class FeedCounts:
    read: int = 0
    rejected: int = 0
    posted: int = 0
    alerts: int = 0
    recommendations: int = 0


class ScoreFileFeed(threading.Thread):
    """Follows the flow's score file and posts each new score to ``POST /scores``.

    Lines are validated as ``alerts consume`` validates messages (:func:`serving.score_feed.
    parse_score`); refused ones go to ``rejected`` with the reason. A failed post (service
    restarting) is retried until it succeeds or the demo stops.
    """

    def __init__(
        self, scores: Path, rejected: Path, api: Api, stop: threading.Event, batch: int = 1000
    ) -> None:
        super().__init__(name="score-feed", daemon=True)
        self.scores, self.rejected, self.api, self.stop, self.batch = (
            scores,
            rejected,
            api,
            stop,
            batch,
        )
        self.counts = FeedCounts()
        self.error: BaseException | None = None

    def _new_lines(self, offset: int) -> tuple[list[bytes], int]:
        if not self.scores.exists():
            return [], offset
        with self.scores.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        return data[:end].splitlines(), offset + end

    def run(self) -> None:
        from serving.score_feed import parse_score

        offset = 0
        try:
            with self.rejected.open("a") as bad:
                while not self.stop.is_set():
                    lines, offset = self._new_lines(offset)
                    good = []
                    for line in lines:
                        self.counts.read += 1
                        try:
                            obj = json.loads(line)
                            verdict = parse_score(obj)
                        except ValueError as exc:
                            obj, verdict = None, f"not JSON: {exc}"
                        if isinstance(verdict, str):
                            self.counts.rejected += 1
                            bad.write(json.dumps({"raw": line.decode(), "reason": verdict}) + "\n")
                        else:
                            good.append(obj)
                    for start in range(0, len(good), self.batch):
                        self._post(good[start : start + self.batch])
                    if not lines:
                        self.stop.wait(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by the main loop
            self.error = exc

    def _post(self, scores: list[dict[str, Any]]) -> None:
        import httpx

        delay = 0.5
        while not self.stop.is_set():
            try:
                response = self.api.post("/scores", {"scores": scores}, user="stream")
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 200:
                body = response.json()
                self.counts.posted += len(scores)
                self.counts.alerts += len(body["alerts"])
                self.counts.recommendations += len(body["recommendations"])
                return
            if response is not None and 400 <= response.status_code < 500:
                raise ScoreFeedRefused(
                    f"POST /scores refused: {response.status_code} {response.text}"
                )
            self.stop.wait(delay)
            delay = min(delay * 2, 5.0)


@dataclass
class Latency:
    """Event-to-alert latencies (s) measured so far, and alerts that could not be matched."""

    seconds: list[float] = field(default_factory=list)
    unmatched: int = 0

    def summary(self) -> dict[str, float | int]:
        import numpy as np

        if not self.seconds:
            return {"alerts_measured": 0, "unmatched": self.unmatched}
        arr = np.asarray(self.seconds)
        return {
            "alerts_measured": len(arr),
            "unmatched": self.unmatched,
            "p50_s": round(float(np.percentile(arr, 50)), 3),
            "p95_s": round(float(np.percentile(arr, 95)), 3),
            "p99_s": round(float(np.percentile(arr, 99)), 3),
            "max_s": round(float(arr.max()), 3),
        }


class Monitor:
    """Reads the service's alerts, queue and tasks; measures event-to-alert latency."""

    def __init__(self, api: Api, index: ReleaseIndex) -> None:
        self.api, self.index = api, index
        self.latency = Latency()
        self.last_alert_id = 0
        self.alerts = 0
        self.pending = 0
        self.tasks = 0

    def poll(self) -> None:
        alerts = self.api.get("/alerts", limit=1000)
        new = [a for a in alerts if a["id"] > self.last_alert_id]
        if new:
            missed = max(a["id"] for a in new) - self.last_alert_id - len(new)
            self.latency.unmatched += max(missed, 0)  # more than 1000 since the last poll
            self.last_alert_id = max(a["id"] for a in new)
        for alert in new:
            released = self.index.release_of(
                f"{alert['sku']}|{alert['location']}", parse_ts(alert["as_of"]) or float("nan")
            )
            created = parse_ts(alert["created_at"])
            if released is None or created is None:
                self.latency.unmatched += 1
            else:
                self.latency.seconds.append(max(0.0, created - released))
        self.alerts = self.last_alert_id
        self.pending = len(
            self.api.get("/recommendations", user="ana", state="pending", limit=1000)
        )
        self.tasks = len(self.api.get("/tasks", user="olga", state="open", limit=1000))
