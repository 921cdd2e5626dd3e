"""Event-to-alert latency over Kafka at a sustained input rate: occurred → alert stored.

The whole streaming path, as deployed, on this machine: a producer publishes events to a topic
at a fixed rate; ``shelfguard score-stream`` (feature + scoring dataflow, one worker, packaged
champion models) sends score messages to a scores topic; ``shelfguard alerts consume`` (the
approval service's consumer, SQLite) turns them into alerts, recommendations and effects.

Every event is stamped ``occurred_at`` = the wall clock when it is handed to the producer, so an
alert's latency is ``alert.created_at − alert.as_of`` (``as_of`` is the key's newest event time,
the triggering event's ``occurred_at``); the same figure as the service's
``shelfguard_event_to_alert_seconds`` metric. The score messages' ``scored_at`` split it into
event → scored and scored → alert stored.

Load: before the timed window, a warm-up gives every key a history (in the past): *trigger*
keys sold steadily for 18 days and then went silent for 12; *background* keys sell steadily and
are well stocked. In the window, background keys get sales and receipts at the input rate, and
``--triggers-per-s`` (default 5) trigger keys get a ``pick_short`` each: a silent key whose
pick fails is a phantom-inventory alert (and a stockout alert). Alerts are raised only by those
triggers, so the sample is the same size at every input rate. Every event, background or not,
produces score messages the service must ingest (to keep positions and ATP current).

``python -m bench.event_to_alert [--rates 1000,5000] [--seconds 20]`` writes
``bench/results/event_to_alert.json``; needs the broker of ``infra/kafka/kafka.sh start``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.feature_flow import delete_topics, kafka_answers, machine

REPO = Path(__file__).resolve().parents[1]
SHELFGUARD = str(Path(sys.executable).parent / "shelfguard")
RESULTS = REPO / "bench" / "results"
BOOTSTRAP = "127.0.0.1:9092"
GOAL_P99_S = 1.0
BACKGROUND_KEYS = 2_000
TICK_S = 0.01


def _ts(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _event(event_id: str, etype: str, when: datetime, key: tuple[str, str], qty: int) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "event_type": etype,
            "occurred_at": _ts(when),
            "sku": key[0],
            "location": key[1],
            "quantity": qty,
            "source": "pos",
            "unit_price": 4.0,
        },
        separators=(",", ":"),
    ).encode()


def trigger_key(i: int) -> tuple[str, str]:
    return (f"SKU-T{i:05d}", f"S{i % 50:03d}")


def background_key(i: int) -> tuple[str, str]:
    return (f"SKU-B{i:05d}", f"S{i % 50:03d}")


def warm_up_history(triggers: int, now: datetime) -> list[bytes]:
    """Trigger keys: opening count of 60, 3 sales a day for 18 days, then 12 silent days.
    Background keys: opening count of 400, 2 sales a day for 14 days up to yesterday."""
    lines = []
    for i in range(triggers):
        key = trigger_key(i)
        lines.append(_event(f"wt{i}-0", "cycle_count", now - timedelta(days=30), key, 60))
        for d in range(18):
            for k in range(3):
                when = now - timedelta(days=30 - d) + timedelta(hours=9 + 3 * k)
                lines.append(_event(f"wt{i}-{d}-{k}", "sale", when, key, 1))
    for i in range(BACKGROUND_KEYS):
        key = background_key(i)
        lines.append(_event(f"wb{i}-0", "cycle_count", now - timedelta(days=15), key, 400))
        for d in range(14):
            for k in range(2):
                when = now - timedelta(days=15 - d) + timedelta(hours=10 + 4 * k)
                lines.append(_event(f"wb{i}-{d}-{k}", "sale", when, key, 1))
    return lines


# -------------------------------------------------------------------------------- processes


class Child:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.log = cwd / f"{name}.log"
        with self.log.open("wb") as fh:
            self.popen = subprocess.Popen(  # noqa: S603
                argv, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                stdout=fh, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=15)

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def producer(bootstrap: str) -> Any:
    from confluent_kafka import Producer

    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
        }
    )


def produce_all(prod: Any, topic: str, lines: list[bytes]) -> None:
    from pipelines.publish import message_key

    for line in lines:
        while True:
            try:
                prod.produce(topic, line, message_key(line))
                break
            except BufferError:
                prod.poll(0.05)
    prod.flush(120)


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------- run


def publish_window(
    prod: Any, topic: str, rate: int, seconds: float, triggers_per_s: int, triggers: int
) -> dict[str, Any]:
    """The timed window: ``rate`` events/s for ``seconds``, ``triggers_per_s`` of them
    pick_shorts on trigger keys, the rest sales and receipts on background keys; every event
    stamped ``occurred_at`` = now when handed to the producer."""
    per_tick, trig_per_tick = rate * TICK_S, triggers_per_s * TICK_S
    sent = sent_triggers = tick = 0
    owed = owed_triggers = 0.0
    window_start = datetime.now(UTC)
    t0 = time.perf_counter()
    while True:
        delay = t0 + tick * TICK_S - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if time.perf_counter() - t0 >= seconds:
            break
        owed += per_tick
        owed_triggers += trig_per_tick
        now = datetime.now(UTC)
        while owed_triggers >= 1 and sent_triggers < triggers:
            key = trigger_key(sent_triggers)
            line = _event(f"t{sent_triggers}", "pick_short", now, key, 1)
            prod.produce(topic, line, f"{key[0]}|{key[1]}".encode())
            sent_triggers += 1
            owed_triggers -= 1
            owed -= 1
            sent += 1
        while owed >= 1:
            key = background_key(sent % BACKGROUND_KEYS)
            etype = "receipt" if sent % 3 == 0 else "sale"
            prod.produce(
                topic, _event(f"b{sent}", etype, now, key, 1), f"{key[0]}|{key[1]}".encode()
            )
            owed -= 1
            sent += 1
        prod.poll(0)
        tick += 1
    window_s = time.perf_counter() - t0
    prod.flush(60)
    return {
        "start": window_start,
        "t0": t0,
        "sent": sent,
        "triggers": sent_triggers,
        "window_s": window_s,
        "published_s": time.perf_counter() - t0,
    }


def run_rate(
    rate: int, seconds: float, triggers_per_s: int, bootstrap: str, service: bool = True
) -> dict[str, Any]:
    """One run on fresh topics and a fresh database. ``service=False``: no ``alerts consume``;
    the latency is then event → scored (the flow's own share), from the score messages."""
    from sqlalchemy import func, select

    from pipelines.publish import ensure_topic
    from serving.store import Store
    from serving.store.tables import Alert, Position

    tag = uuid.uuid4().hex[:8]
    group = f"bench-{tag}"
    topics = {
        name: f"bench.e2a.{name}.{tag}"
        for name in ("events", "dlq", "scores", "scores_dlq", "alerts", "atp", "effects")
    }
    for name, topic in topics.items():
        ensure_topic(bootstrap, topic, 8 if name in ("events", "scores") else 1)
    triggers = int(triggers_per_s * seconds)
    keys = triggers + BACKGROUND_KEYS
    alerts: list[Any] = []
    warm_alerts = 0
    drained_s = float("nan")
    with tempfile.TemporaryDirectory(prefix="bench-e2a-") as tmp:
        work = Path(tmp)
        db_url = f"sqlite:///{work}/service.db"
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        service_env = {
            "SHELFGUARD_DATABASE_URL": db_url,
            "SHELFGUARD_KAFKA_BOOTSTRAP": bootstrap,
            "SHELFGUARD_SCORES_TOPIC": topics["scores"],
            "SHELFGUARD_SCORES_DLQ_TOPIC": topics["scores_dlq"],
            "SHELFGUARD_ALERTS_TOPIC": topics["alerts"],
            "SHELFGUARD_ATP_TOPIC": topics["atp"],
            "SHELFGUARD_EVENTS_TOPIC": topics["effects"],
        }
        children = []
        store = Store(db_url)
        try:
            # cwd = the temp dir: no ./mlflow.db there, so the packaged champions score
            children.append(
                Child(
                    "score-stream",
                    [SHELFGUARD, "score-stream", "--bootstrap", bootstrap,
                     "--topic", topics["events"], "--dlq-topic", topics["dlq"],
                     "--scores-topic", topics["scores"],
                     # event-triggered alerts only: the window's first events pass the
                     # warm-up's closes, and a sweep would raise the silent trigger keys'
                     # alerts as of midnight before their failed picks (see README)
                     "--no-close-sweep"],
                    env, work,
                )
            )  # fmt: skip
            if service:
                children.append(
                    Child(
                        "alerts-consume",
                        [SHELFGUARD, "alerts", "consume", "--group", group],
                        {**env, **service_env}, work,
                    )
                )  # fmt: skip
            prod = producer(bootstrap)
            history = warm_up_history(triggers, datetime.now(UTC))
            produce_all(prod, topics["events"], history)

            def warmed() -> bool:
                for child in children:
                    if not child.alive():
                        raise RuntimeError(f"{child.name} exited:\n{child.tail()}")
                if not service:
                    return True
                try:
                    with store.reader() as session:
                        return session.scalar(select(func.count()).select_from(Position)) == keys
                except Exception:  # noqa: BLE001 - the consumer may not have migrated yet
                    return False

            wait_for(warmed, 300, "the warm-up to reach the service")
            # ... and every warm-up score consumed: the window starts with no backlog
            wait_for(
                lambda: settled(bootstrap, topics["scores"], group if service else None),
                300,
                "the scores topic to stop growing (and the consumer to catch up)",
                interval=0.1,
            )
            if service:
                with store.reader() as session:
                    warm_alerts = session.scalar(select(func.count()).select_from(Alert)) or 0
            window = publish_window(prod, topics["events"], rate, seconds, triggers_per_s, triggers)
            window_start = window["start"]
            if service:

                def all_alerted() -> bool:
                    with store.reader() as session:
                        n = session.scalar(
                            select(func.count(func.distinct(Alert.sku))).where(
                                Alert.as_of >= window_start, Alert.sku.like("SKU-T%")
                            )
                        )
                    return n == window["triggers"]

                try:
                    wait_for(all_alerted, 180, "an alert for every trigger")
                    drained_s = time.perf_counter() - window["t0"]
                except TimeoutError:
                    pass
                with store.reader() as session:
                    alerts = session.execute(
                        select(
                            Alert.sku, Alert.location, Alert.kind, Alert.as_of, Alert.created_at
                        ).where(Alert.as_of >= window_start)
                    ).all()
            else:
                wait_for(
                    lambda: settled(bootstrap, topics["scores"], None),
                    300,
                    "the flow to score the whole window",
                    interval=0.1,
                )
                drained_s = time.perf_counter() - window["t0"]
        finally:
            store.dispose()
            for child in reversed(children):
                child.stop()
        scored, score_messages = scored_at_by_key(bootstrap, topics["scores"], window_start)
    delete_topics(bootstrap, list(topics.values()))

    to_score, score_to_alert = [], []
    if service:
        latencies = sorted((a.created_at - a.as_of).total_seconds() for a in alerts)
        for a in alerts:
            when = scored.get((f"{a.sku}|{a.location}", a.as_of.timestamp()))
            if when is not None:
                to_score.append(when - a.as_of.timestamp())
                score_to_alert.append(a.created_at.timestamp() - when)
    else:
        latencies = []
        to_score = [when - as_of for (_key, as_of), when in scored.items()]
    return {
        "rate_target": rate,
        "stages": "event → alert stored" if service else "event → scored (no service)",
        "seconds": seconds,
        "events_sent": window["sent"],
        "rate_achieved": round(window["sent"] / window["window_s"]),
        "rate_including_flush": round(window["sent"] / window["published_s"]),
        "triggers": window["triggers"],
        "score_messages": score_messages,
        "score_messages_per_s_offered": round(score_messages / window["window_s"]),
        "service_consumed_score_messages_per_s": round(score_messages / drained_s)
        if service and drained_s > window["window_s"] * 1.2
        else None,
        "alerts": len(alerts),
        "alerts_kinds": {k: sum(a.kind == k for a in alerts) for k in ("phantom", "stockout")},
        "warm_up_alerts": warm_alerts,
        "warm_up_events": len(history),
        "all_stored_after_window_start_s": round(drained_s, 1),
        "event_to_alert_s": percentiles(latencies),
        "event_to_scored_s": percentiles(sorted(to_score)),
        "scored_to_alert_s": percentiles(sorted(score_to_alert)),
    }


_last_ends: dict[str, tuple[int, float]] = {}


def settled(bootstrap: str, topic: str, group: str | None, quiet_s: float = 3.0) -> bool:
    """True when ``topic`` has not grown for ``quiet_s`` seconds and ``group`` (if any) has
    committed its end (no backlog anywhere upstream of the alerts)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group or "bench-probe",
                         "enable.auto.commit": False})  # fmt: skip
    try:
        parts = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        tps = [TopicPartition(topic, p) for p in parts]
        ends = sum(consumer.get_watermark_offsets(tp, timeout=30)[1] for tp in tps)
        committed = ends
        if group is not None:
            committed = sum(max(tp.offset, 0) for tp in consumer.committed(tps, timeout=30))
    finally:
        consumer.close()
    before = _last_ends.get(topic)
    now = time.monotonic()
    if before is None or before[0] != ends:
        _last_ends[topic] = (ends, now)
        return False
    return committed == ends and now - before[1] >= quiet_s


def scored_at_by_key(
    bootstrap: str, topic: str, since: datetime
) -> tuple[dict[tuple[str, float], float], int]:
    """(key, as_of POSIX s) → the first ``scored_at`` (POSIX s) of a score message as of
    ``since`` or later that would alert (phantom or stockout ≥ 0.5); and how many score
    messages as of ``since`` or later there are in all."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})  # fmt: skip
    parts = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in parts
    }
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    done = {p: ends[p] == 0 for p in parts}
    out: dict[tuple[str, float], float] = {}
    total = 0
    deadline = time.monotonic() + 120
    while not all(done.values()) and time.monotonic() < deadline:
        for msg in consumer.consume(10_000, 0.5):
            if msg.error() is not None:
                continue
            if msg.offset() + 1 >= ends[msg.partition()]:
                done[msg.partition()] = True
            body = json.loads(msg.value())
            as_of = datetime.fromisoformat(body["as_of"].replace("Z", "+00:00"))
            if as_of < since:
                continue
            total += 1
            if max(body["phantom_score"], body["stockout_score"]) < 0.5:
                continue
            scored = datetime.fromisoformat(body["scored_at"].replace("Z", "+00:00")).timestamp()
            out.setdefault((msg.key().decode(), as_of.timestamp()), scored)
    consumer.close()
    return out, total


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}

    def pick(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    return {
        "n": len(values),
        "p50": round(pick(0.50), 3),
        "p90": round(pick(0.90), 3),
        "p99": round(pick(0.99), 3),
        "max": round(values[-1], 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,5000", help="comma-separated events/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed window per rate")
    parser.add_argument("--triggers-per-s", type=int, default=5)
    parser.add_argument("--bootstrap", default=BOOTSTRAP)
    parser.add_argument(
        "--flow-only-rate",
        type=int,
        default=5000,
        help="also run at this rate without the service (event → scored); 0 = skip",
    )
    args = parser.parse_args(argv if argv is not None else [])
    if not kafka_answers(args.bootstrap):
        raise RuntimeError(f"no Kafka broker at {args.bootstrap}: bash infra/kafka/kafka.sh start")
    runs = [
        run_rate(int(rate), args.seconds, args.triggers_per_s, args.bootstrap)
        for rate in args.rates.split(",")
    ]
    if args.flow_only_rate:
        runs.append(
            run_rate(args.flow_only_rate, args.seconds, args.triggers_per_s, args.bootstrap, False)
        )
    result = {
        "machine": machine(),
        "pipeline": "producer → Kafka → score-stream (1 worker, packaged models) → Kafka → "
        "alerts consume (SQLite) → alert stored; all on this machine",
        "goal_p99_s": GOAL_P99_S,
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "event_to_alert.json").write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    return result


def print_table(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, {m['python']}")
    print(result["pipeline"])
    print(f"{'stages':<30}{'rate ev/s':>10}{'achieved':>10}{'samples':>8}{'p50 s':>8}"
          f"{'p99 s':>8}{'max s':>8}{'ev→scored p50/p99':>20}"
          f"{'scored→alert p50/p99':>23}")  # fmt: skip
    for r in result["runs"]:
        e2a, e2s, s2a = r["event_to_alert_s"], r["event_to_scored_s"], r["scored_to_alert_s"]
        main_figure = e2a if r["stages"].endswith("alert stored") else e2s
        to_score = f"{e2s['p50']} / {e2s['p99']}"
        to_alert = f"{s2a['p50']} / {s2a['p99']}"
        print(
            f"{r['stages']:<30}{r['rate_target']:>10,}{r['rate_achieved']:>10,}"
            f"{main_figure['n']:>8}{main_figure['p50']!s:>8}{main_figure['p99']!s:>8}"
            f"{main_figure['max']!s:>8}{to_score:>20}{to_alert:>23}"
        )
        print(f"  {r['score_messages']:,} score messages in the window "
              f"({r['score_messages_per_s_offered']:,}/s); everything stored/scored "
              f"{r['all_stored_after_window_start_s']} s after the window's start "
              f"(window {r['seconds']:.0f} s)")  # fmt: skip
        if main_figure["p99"] is not None:
            verdict = "meets" if main_figure["p99"] < result["goal_p99_s"] else "MISSES"
            print(f"  p99 {verdict} the {result['goal_p99_s']} s goal")


def summary(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for r in result["runs"]:
        if r["stages"].endswith("alert stored"):
            rows.append(
                (
                    f"event→alert over Kafka at {r['rate_target']:,} ev/s",
                    f"p50 {r['event_to_alert_s']['p50']} s, p99 {r['event_to_alert_s']['p99']} s"
                    f" ({r['alerts']} alerts; of which event→scored p99 "
                    f"{r['event_to_scored_s']['p99']} s)",
                )
            )
        else:
            rows.append(
                (
                    f"event→scored over Kafka at {r['rate_target']:,} ev/s (flow only)",
                    f"p50 {r['event_to_scored_s']['p50']} s, p99 {r['event_to_scored_s']['p99']} s"
                    f" ({r['event_to_scored_s']['n']} alerting scores)",
                )
            )
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
