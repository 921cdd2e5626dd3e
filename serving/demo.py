"""``shelfguard demo``: the whole loop, live, on one machine, until Ctrl-C.

In order (files under ``--out``, default ``data/live``; the MLflow registry is ``./mlflow.db``):

1. simulate a retailer whose ``days`` end at today's UTC midnight (``world/``);
2. register the packaged models in the local MLflow registry as ``champion`` (idempotent);
3. a fresh service database (``shelfguard.db``) with demo users, whose API tokens are printed
   and written to ``users.json`` (mode 0600);
4. child processes, each in its own process group, logs in ``logs/``: ``shelfguard serve`` (API
   and UI), ``mlflow ui`` (unless ``--mlflow-port 0``), ``shelfguard score-stream`` (features +
   scoring, champions hot-reloaded) and, with ``--kafka``, ``shelfguard alerts consume``;
5. the event log replayed in accelerated time (:mod:`pipelines.pacing`: ``seconds_per_day`` wall
   seconds per simulated day, the first ``warmup_days`` at once), appended to
   ``live/events.jsonl``, which the flow follows, or published to the events topic (``--kafka``);
6. scores into the service: file mode — the demo follows the flow's ``live/scores.jsonl`` and
   posts it to ``POST /scores`` as user ``stream`` (each line validated first, as ``alerts
   consume`` does); Kafka — ``alerts consume`` reads the scores topic. With ``--kafka`` the
   service's effects (cycle counts done in the UI) go back to the events topic and the flow;
7. progress and event-to-alert latency: from the wall time the demo released an alert's newest
   event (the alert's ``as_of``) to the alert's ``created_at``. Simulated event time is not wall
   time, so the service's own histogram (``created − as_of``) shows simulated age in the demo.

Ctrl-C (or SIGTERM, SIGHUP): threads stop, each child's process group gets SIGINT, then SIGTERM
and SIGKILL after grace periods, and the demo returns only when no process of those groups is
left. Children get SIGTERM too if the demo itself is killed (Linux ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipelines.connectors import DEFAULT_BOOTSTRAP
from pipelines.pacing import DAY_S, Pacing
from serving.demo_feed import Api, Monitor, ScoreFileFeed
from serving.demo_replay import FileAppender, KafkaAppender, ReleaseIndex, Replayer
from serving.supervisor import Child, Supervisor

BIN = Path(sys.executable).parent
Print = Callable[[str], None]


@dataclass(frozen=True)
class DemoOptions:
    """What ``shelfguard demo`` runs (the CLI options, one to one)."""

    out: Path = Path("data/live")
    stores: int = 10
    skus: int = 200
    days: int = 30
    seed: int = 1
    seconds_per_day: float = 6.0  # wall seconds per simulated day
    warmup_days: float = 0.0  # the first days of the log go at once
    host: str = "127.0.0.1"
    port: int = 8000
    mlflow_port: int = 5000  # 0: do not start the MLflow UI
    kafka: bool = False
    bootstrap: str = DEFAULT_BOOTSTRAP
    topic_prefix: str = "demo"
    registry_poll_s: float = 30.0  # the flow's champion checks
    tracking_uri: str | None = None  # default: $MLFLOW_TRACKING_URI or ./mlflow.db
    status_every_s: float = 5.0


DEMO_USERS = (
    ("olga", "ops"),
    ("ana", "approver"),
    ("bert", "approver"),
    ("alice", "admin"),
    ("stream", "data_scientist"),  # the file-mode score feed posts as this user
)


class DemoFailed(RuntimeError):
    """A step of the demo could not be done; the message says which and where the log is."""


# -- the steps ---------------------------------------------------------------------------------
def simulate_world(opts: DemoOptions, now: datetime) -> tuple[Path, datetime]:
    """The world under ``out/world``; its ``days`` end at ``now``'s UTC midnight."""
    from pipelines.simulator import simulate

    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = midnight - timedelta(days=opts.days)
    world = opts.out / "world"
    simulate(
        world,
        seed=opts.seed,
        stores=opts.stores,
        skus=opts.skus,
        days=opts.days,
        start=start,
        progress=False,
    )
    return world / "events.jsonl", start


def create_users(database_url: str, now: datetime) -> dict[str, str]:
    """The demo users in a fresh database; returns {name: API token}."""
    from serving import audit
    from serving.auth import Role, create_user
    from serving.settings import ServiceSettings
    from serving.store import Store

    pepper = ServiceSettings(database_url=database_url).token_pepper.get_secret_value()
    store = Store(database_url)
    store.migrate()
    tokens = {}
    try:
        with store.transaction() as session:
            for name, role in DEMO_USERS:
                _user, tokens[name] = create_user(session, name, Role(role), pepper, now)
                audit.append(
                    session,
                    at=now,
                    actor="demo",
                    action="user.created",
                    subject=f"user:{name}",
                    payload={"role": role},
                )
    finally:
        store.dispose()
    return tokens


def kafka_topics(prefix: str, run: str) -> dict[str, str]:
    base = f"{prefix}.{run}."
    return {
        name: base + topic
        for name, topic in (
            ("events", "inventory.events"),
            ("dlq", "inventory.events.dlq"),
            ("features", "inventory.features"),
            ("scores", "inventory.scores"),
            ("scores_dlq", "inventory.scores.dlq"),
            ("alerts", "inventory.alerts"),
            ("atp", "inventory.atp"),
        )
    }


def reset_kafka_topics(bootstrap: str, prefix: str, topics: dict[str, str]) -> None:
    """Delete earlier demo runs' ``<prefix>.*`` topics; create this run's."""
    from confluent_kafka.admin import AdminClient

    from pipelines.publish import ensure_topic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    old = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix + ".")]
    if old:
        for fut in admin.delete_topics(old, operation_timeout=30).values():
            try:
                fut.result(timeout=30)
            except Exception:  # noqa: BLE001, S110 - best effort: an old topic may linger
                pass
    for name, topic in topics.items():
        ensure_topic(bootstrap, topic, 8 if name in ("events", "scores") else 1)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str, child: Child) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if child.popen.poll() is not None:
            raise DemoFailed(f"{child.name} exited while {what}; log {child.log}:\n{child.tail()}")
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out {what}; log {child.log}:\n{child.tail()}")
        time.sleep(0.2)


def _require_free_port(host: str, port: int, option: str) -> None:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise DemoFailed(
                f"port {port} on {host} is in use; pick another with {option}"
            ) from None


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def _quietly(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn`` with MLflow's logs, prints and artifact progress bars silenced."""
    import contextlib
    import io
    import logging

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return fn(*args)
    finally:
        logger.setLevel(level)


def _shelfguard(*args: str) -> list[str]:
    return [str(BIN / "shelfguard"), *args]


class _Stop(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop as Ctrl-C does."""


def _raise_stop(signum: int, _frame: Any) -> None:
    raise _Stop(signal.Signals(signum).name)


# -- the run -------------------------------------------------------------------------------------
def banner(opts: DemoOptions, tokens: dict[str, str], registry_uri: str, users_file: Path) -> str:
    base = f"http://{opts.host}:{opts.port}"
    if opts.mlflow_port:
        mlflow_line = f"http://{opts.host}:{opts.mlflow_port}  (Models: phantom-inventory, "
        mlflow_line += "stockout-risk, alias @champion)"
    else:
        mlflow_line = f"{BIN / 'mlflow'} ui --backend-store-uri {registry_uri}"
    rows = "\n".join(
        f"    {name:<7} {role:<15} {tokens[name]}" for name, role in DEMO_USERS if name != "stream"
    )
    mode = "Kafka (" + opts.bootstrap + ")" if opts.kafka else "embedded (files, no broker)"
    feedback = (
        "\n       The count goes to the events topic; the key's next score reflects it."
        if opts.kafka
        else ""
    )
    return f"""
shelfguard demo is running — {mode}. Ctrl-C stops everything.

  Web UI     {base}/ui        (sign in with a token below)
  API docs   {base}/docs
  Metrics    {base}/metrics
  MLflow UI  {mlflow_line}

  Users (tokens also in {users_file}):
{rows}

  What to click:
    1. {base}/ui, sign in as ana (approver): the approval queue fills as the replay
       advances (the page updates itself); each row shows the risk, the model's explanation and
       version. Approve one, or Reject it with a reason.
    2. Sign in as olga (ops): the alert feed, and the count tasks the policy opened on its own
       (high phantom scores). Record a counted quantity to complete one.{feedback}
    3. {base}/docs: every endpoint ("Authorize" with a token). E.g. POST /write-offs as
       olga, then approve it as ana and bert (two approvers above the policy's value).
    4. Hot reload: point the champion alias at another version (MLflow UI > Models, or
       `shelfguard train`, which promotes a challenger that beats the champion); the flow
       checks every {opts.registry_poll_s:g} s and new alerts carry the new version.
"""


def run_demo(
    opts: DemoOptions,
    out: Print = print,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Run until Ctrl-C; 0 after a clean stop, 1 when a step or a child failed."""
    from training.registry import default_tracking_uri, register_packaged

    opts.out.mkdir(parents=True, exist_ok=True)
    live, logs = opts.out / "live", opts.out / "logs"
    live.mkdir(exist_ok=True)
    supervisor = Supervisor(logs)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    appender: FileAppender | KafkaAppender | None = None
    api: Api | None = None
    monitor: Monitor | None = None
    feed: ScoreFileFeed | None = None
    replayer: Replayer | None = None
    status = 0
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        _require_free_port(opts.host, opts.port, "--port")
        if opts.mlflow_port:
            _require_free_port(opts.host, opts.mlflow_port, "--mlflow-port (0: no MLflow UI)")
        out(f"1/6 simulating {opts.stores} stores x {opts.skus} skus x {opts.days} days ...")
        events, start = simulate_world(opts, now())

        registry_uri = opts.tracking_uri or default_tracking_uri()
        out(f"2/6 registering the packaged models as champions in {registry_uri} ...")
        champions = _quietly(register_packaged, registry_uri)
        out("    " + ", ".join(f"{k} v{v}" for k, v in champions.items()))

        db_path = (opts.out / "shelfguard.db").resolve()
        _remove_db(db_path)
        database_url = f"sqlite:///{db_path}"
        tokens = create_users(database_url, now())
        users_file = opts.out / "users.json"
        users_file.write_text(json.dumps(tokens, indent=2))
        users_file.chmod(0o600)

        run = uuid.uuid4().hex[:8]
        topics = kafka_topics(opts.topic_prefix, run)
        service_env = {"SHELFGUARD_DATABASE_URL": database_url, "SHELFGUARD_KAFKA_BOOTSTRAP": ""}
        if opts.kafka:
            out(f"    Kafka topics {opts.topic_prefix}.{run}.* on {opts.bootstrap}")
            reset_kafka_topics(opts.bootstrap, opts.topic_prefix, topics)
            service_env = {
                "SHELFGUARD_DATABASE_URL": database_url,
                "SHELFGUARD_KAFKA_BOOTSTRAP": opts.bootstrap,
                "SHELFGUARD_EVENTS_TOPIC": topics["events"],
                "SHELFGUARD_ALERTS_TOPIC": topics["alerts"],
                "SHELFGUARD_ATP_TOPIC": topics["atp"],
                "SHELFGUARD_SCORES_TOPIC": topics["scores"],
                "SHELFGUARD_SCORES_DLQ_TOPIC": topics["scores_dlq"],
            }

        out(f"3/6 starting the service (http://{opts.host}:{opts.port}) and the scoring flow ...")
        service = supervisor.start(
            "serve",
            _shelfguard("serve", "--host", opts.host, "--port", str(opts.port)),
            service_env,
        )
        if opts.mlflow_port and registry_uri.startswith("sqlite:"):
            supervisor.start(
                "mlflow-ui",
                [str(BIN / "mlflow"), "ui", "--backend-store-uri", registry_uri]
                + ["--host", opts.host, "--port", str(opts.mlflow_port), "--workers", "1"],
                {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            )
        flow_args = ["--tracking-uri", registry_uri, "--poll-seconds", str(opts.registry_poll_s)]
        if opts.kafka:
            flow_args += ["--bootstrap", opts.bootstrap, "--topic", topics["events"]]
            flow_args += ["--dlq-topic", topics["dlq"], "--scores-topic", topics["scores"]]
            flow_args += ["--features-topic", topics["features"]]
        else:
            for name in ("events.jsonl", "scores.jsonl", "dlq.jsonl", "scores.rejected.jsonl"):
                (live / name).unlink(missing_ok=True)
            flow_args += ["--events", str(live / "events.jsonl"), "--follow"]
            flow_args += ["--scores-out", str(live / "scores.jsonl")]
            flow_args += ["--dlq-out", str(live / "dlq.jsonl")]
        flow = supervisor.start("score-stream", _shelfguard("score-stream", *flow_args))
        if opts.kafka:  # the database is migrated (create_users), so no race with `serve`
            supervisor.start(
                "alerts-consume",
                _shelfguard("alerts", "consume", "--group", f"shelfguard-demo-{run}"),
                service_env,
            )
        api = Api(f"http://{opts.host}:{opts.port}", tokens)
        _wait_for(api.ready, 90, "waiting for the service to be ready", service)
        out("4/6 service ready; waiting for the flow to load the champion models ...")
        _wait_for(
            lambda: "score-stream ready" in flow.log.read_text(errors="replace"),
            180,
            "waiting for the scoring flow to load its models",
            flow,
        )

        index = ReleaseIndex()
        pacing = Pacing(
            start.timestamp() + opts.warmup_days * DAY_S, time.time(), opts.seconds_per_day
        )
        if opts.kafka:
            appender = KafkaAppender(opts.bootstrap, topics["events"])
        else:
            appender = FileAppender(live / "events.jsonl")
        replayer = Replayer(events, pacing, appender, index, stop)
        threads.append(replayer)
        if not opts.kafka:
            feed = ScoreFileFeed(live / "scores.jsonl", live / "scores.rejected.jsonl", api, stop)
            threads.append(feed)
        for thread in threads:
            thread.start()
        monitor = Monitor(api, index)
        replay_s = (opts.days - opts.warmup_days) * opts.seconds_per_day
        pace = f"{opts.seconds_per_day:g} s per day"
        out(f"5/6 replaying {opts.days} days at {pace} (~{replay_s:.0f} s)")
        out(banner(opts, tokens, registry_uri, users_file))
        out("6/6 live (Ctrl-C to stop):")
        status = _watch(opts, supervisor, replayer, feed, monitor, stop, out)
    except KeyboardInterrupt:
        out("\nstopping ...")
    except DemoFailed as exc:
        out(f"demo failed: {exc}")
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        if appender is not None:
            appender.close()
        if monitor is not None:
            try:
                monitor.poll()  # the final figures, while the service still answers
            except Exception:  # noqa: BLE001, S110 - the summary then has the last poll's
                pass
        supervisor.stop()
        if api is not None:
            api.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    summary = _summary(replayer, feed, monitor)
    (opts.out / "summary.json").write_text(json.dumps(summary, indent=2))
    leftovers = supervisor.leftovers()
    if leftovers:
        out(f"processes left behind: {leftovers}")
        status = 1
    out(f"stopped ({len(supervisor.children)} child processes ended). " + json.dumps(summary))
    return status


def _watch(
    opts: DemoOptions,
    supervisor: Supervisor,
    replayer: Replayer,
    feed: ScoreFileFeed | None,
    monitor: Monitor,
    stop: threading.Event,
    out: Print,
) -> int:
    """Poll and print until Ctrl-C (KeyboardInterrupt) or a failure (returns 1)."""
    next_status = 0.0
    announced_end = False
    last_line = ""
    while True:
        stop.wait(1.0)
        dead = supervisor.exited()
        if dead is not None:
            out(
                f"{dead.name} exited (code {dead.popen.returncode}); log {dead.log}:\n{dead.tail()}"
            )
            return 1
        for thread in (replayer, feed):
            if thread is not None and thread.error is not None:
                out(f"{thread.name} failed: {thread.error!r}")
                return 1
        try:
            monitor.poll()
        except Exception as exc:  # noqa: BLE001 - the service may be busy; try again
            out(f"(service not answering: {exc})")
            continue
        line = _status_line(replayer, feed, monitor)
        if time.monotonic() >= next_status and line != last_line:
            next_status = time.monotonic() + opts.status_every_s
            out(line)
            last_line = line
        if replayer.progress.done and not announced_end:
            announced_end = True
            out("replay finished; the service keeps running — Ctrl-C to stop.")


def _status_line(replayer: Replayer, feed: ScoreFileFeed | None, monitor: Monitor) -> str:
    sim = replayer.progress.sim_now
    day = "-" if sim != sim else datetime.fromtimestamp(sim, UTC).strftime("%Y-%m-%d %H:%M")
    lat = monitor.latency.summary()
    parts = [
        f"sim {day}",
        f"events {replayer.progress.released}",
        f"alerts {monitor.alerts}",
        f"pending recommendations {monitor.pending}",
        f"open count tasks {monitor.tasks}",
    ]
    if feed is not None:
        parts.insert(2, f"scores {feed.counts.posted}")
    if "p50_s" in lat:
        parts.append(f"event->alert p50 {lat['p50_s']:.2f} s p99 {lat['p99_s']:.2f} s")
    return "  " + " | ".join(parts)


def _summary(
    replayer: Replayer | None, feed: ScoreFileFeed | None, monitor: Monitor | None
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    if replayer is not None:
        summary["events_released"] = replayer.progress.released
        summary["replay_finished"] = replayer.progress.done
    if feed is not None:
        summary["scores"] = vars(feed.counts)
    if monitor is not None:
        summary["alerts"] = monitor.alerts
        summary["pending_recommendations"] = monitor.pending
        summary["open_count_tasks"] = monitor.tasks
        summary["event_to_alert"] = monitor.latency.summary()
    return summary
