"""Prometheus metrics of one app instance (own registry, so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600, 7 * 86400)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.alerts = Counter(
            "shelfguard_alerts_total", "Alerts raised", ["kind", "severity"], registry=self.registry
        )
        self.outbox_sent = Counter(
            "shelfguard_outbox_sent_total",
            "Kafka messages (alerts, ATP updates, events) published from the outbox",
            registry=self.registry,
        )
        self.outbox_failures = Counter(
            "shelfguard_outbox_failures_total",
            "Outbox publishing rounds that stopped at a failed message (retried with back-off)",
            registry=self.registry,
        )
        self.outbox_pending = Gauge(
            "shelfguard_outbox_pending",
            "Messages stored but not yet published (as of this process's last relay)",
            registry=self.registry,
        )
        self.scores_ingested = Counter(
            "shelfguard_scores_ingested_total",
            "Scores ingested (positions updated; alerts raised for those above the floor)",
            registry=self.registry,
        )
        self.alerts_suppressed = Counter(
            "shelfguard_alerts_suppressed_total",
            "Scores that would alert again within the cooldown",
            registry=self.registry,
        )
        self.decisions = Counter(
            "shelfguard_decisions_total",
            "Recommendation decisions (by humans or by policy)",
            ["action", "decision"],
            registry=self.registry,
        )
        self.effects_failed = Counter(
            "shelfguard_effects_failed_total",
            "Effects that failed",
            ["action"],
            registry=self.registry,
        )
        self.webhook_failures = Counter(
            "shelfguard_webhook_failures_total", "Failed webhook attempts", registry=self.registry
        )
        self.dead_letters = Counter(
            "shelfguard_dead_letters_total",
            "Inputs or deliveries given up on (bad score rows/messages, dead webhook deliveries)",
            ["source"],
            registry=self.registry,
        )
        self.event_to_alert = Histogram(
            "shelfguard_event_to_alert_seconds",
            "From a score's as_of (its newest event time) to the alert being raised",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.reconciliation_exceptions = Counter(
            "shelfguard_reconciliation_exceptions_total",
            "New reconciliation exceptions (stream vs an external extract, beyond tolerance)",
            ["source"],
            registry=self.registry,
        )
