"""Property-based API fuzzing from the OpenAPI spec (schemathesis): no request, valid or not,
gets a 5xx. Requests run as admin (every route reachable) against SQLite with some data in it.

schemathesis' own pytest plugin does not run under this pytest version, so each operation's
hypothesis strategy is driven directly (same generation, same calls)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.serving.conftest import score_row

EXAMPLES = 25


def test_no_server_errors(make_service) -> None:
    svc = make_service()
    svc.post("/scores", "olga", {"scores": [score_row(), score_row("SKU-2", phantom_score=0.95)]})
    schema = schemathesis.openapi.from_asgi("/openapi.json", svc.client.app)
    headers = {"Authorization": f"Bearer {svc.tokens['admin']}"}
    failures: list[str] = []
    statuses: list[int] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=operation.as_strategy())
        def check(case) -> None:
            response = case.call(headers=headers)
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}")

        check()
    assert operations >= 19
    assert len(statuses) >= operations * 5 and any(s < 300 for s in statuses)
    assert failures == []
