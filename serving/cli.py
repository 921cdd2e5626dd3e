"""The ``shelfguard`` command. Subcommands import their modules lazily so start-up stays fast."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="shelfguard",
    help="Streaming analytics and AI exception detection for omnichannel retail inventory.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
EVENTS_TOPIC = "inventory.events"
DLQ_TOPIC = "inventory.events.dlq"
FEATURES_TOPIC = "inventory.features"


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Output directory")],
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files)")] = 1,
    stores: Annotated[int, typer.Option(help="Number of stores")] = 10,
    skus: Annotated[int, typer.Option(help="Number of SKUs")] = 200,
    days: Annotated[int, typer.Option(help="Number of simulated days")] = 30,
    scenario: Annotated[
        Optional[str],  # noqa: UP045 - typer needs Optional here
        typer.Option(help="promo_burst | pos_outage | marketplace_latency | duplicate_storm"),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar")] = False,
    param: Annotated[
        Optional[list[str]],  # noqa: UP045 - typer needs Optional here
        typer.Option(
            "--param",
            help="NAME=VALUE: set a world parameter (a WorldParams field; repeatable), e.g. "
            "--param shrink_base=0.02 --param opening_event=receipt",
        ),
    ] = None,
) -> None:
    """Simulate an omnichannel retailer: DIR/events.jsonl (arrival order) + ground truth."""
    from pipelines.simulator import SCENARIOS
    from pipelines.simulator import simulate as run_simulation
    from pipelines.simulator.world import WorldParams, parse_override

    overrides: dict[str, Any] = {}
    for text in param or []:
        try:
            name, value = parse_override(text)
            WorldParams().replace(**{name: value})  # validates the value too
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--param") from None
        overrides[name] = value

    if scenario is not None and scenario not in SCENARIOS:
        raise typer.BadParameter(
            f"unknown scenario {scenario!r}; choose one of {', '.join(sorted(SCENARIOS))}",
            param_hint="--scenario",
        )
    summary = run_simulation(
        out,
        seed=seed,
        stores=stores,
        skus=skus,
        days=days,
        scenario=scenario,
        progress=not quiet,
        **overrides,
    )
    _print_summary("simulation", summary.to_dict())


@app.command()
def validate(
    events: Annotated[Path, typer.Option("--events", help="JSONL event file")],
    dlq: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Write rejected lines here (JSONL: raw, reason, field, detail)"),
    ] = None,
) -> None:
    """Check an event file against the contract; count rejects by reason."""
    from collections import Counter

    from pipelines.connectors import rejection_line
    from pipelines.events import Rejection, parse_event
    from pipelines.replay import iter_lines

    reasons: Counter[str] = Counter()
    total = 0
    sink = dlq.open("w") if dlq else None
    try:
        for raw in iter_lines(events):
            total += 1
            parsed = parse_event(raw)
            if isinstance(parsed, Rejection):
                reasons[parsed.reason.value] += 1
                if sink:
                    sink.write(rejection_line(parsed) + "\n")
    finally:
        if sink:
            sink.close()
    _print_summary(
        "validation",
        {"lines": total, "valid": total - sum(reasons.values()), **dict(reasons)},
    )


@app.command()
def features(
    out: Annotated[Path, typer.Option("--out", help="Parquet file, one row per sku-location")],
    events: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--events", help="JSONL event file (the embedded default)"),
    ] = None,
    dlq: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--dlq", help="Dead-letter JSONL (default: <out>.dlq.jsonl)"),
    ] = None,
    bootstrap: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Read a Kafka topic from its start to its end instead of a file"),
    ] = None,
    topic: Annotated[str, typer.Option(help="Kafka topic (with --bootstrap)")] = EVENTS_TOPIC,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Bytewax workers")] = 1,
) -> None:
    """Run the feature dataflow over a JSONL file (or a Kafka topic); features as of its end."""
    from pipelines.feature_job import run_features

    if (events is None) == (bootstrap is None):
        raise typer.BadParameter("give exactly one of --events FILE or --bootstrap HOST:PORT")
    if events is not None and not events.exists():
        raise typer.BadParameter(f"{events} does not exist", param_hint="--events")
    result = run_features(
        out, events=events, bootstrap=bootstrap, topic=topic, dlq=dlq, workers=workers
    )
    _print_summary(
        "features",
        {
            "keys": result.keys,
            "rejected (dead-lettered)": result.rejected,
            "duplicates dropped": result.duplicates,
            "out": str(result.out),
        },
    )


@app.command()
def publish(
    events: Annotated[Path, typer.Option("--events", help="JSONL event file")],
    bootstrap: Annotated[str, typer.Option(help="Kafka bootstrap servers")] = DEFAULT_BOOTSTRAP,
    topic: Annotated[str, typer.Option(help="Kafka topic")] = EVENTS_TOPIC,
    quiet: Annotated[bool, typer.Option(help="No progress bar")] = False,
) -> None:
    """Publish an event file to Kafka (idempotent producer, key sku|location)."""
    from pipelines.publish import publish_file

    if not events.exists():
        raise typer.BadParameter(f"{events} does not exist", param_hint="--events")
    result = publish_file(events, bootstrap, topic, progress=not quiet)
    _print_summary(
        "publish",
        {
            "sent": result.sent,
            "delivered": result.delivered,
            "delivery errors": result.failed,
            "events/s": round(result.sent / result.seconds) if result.seconds else 0,
        },
    )
    for error in result.errors:
        console.print(f"[red]delivery error:[/red] {error}")
    if result.failed:
        raise typer.Exit(1)


@app.command()
def stream(
    bootstrap: Annotated[str, typer.Option(help="Kafka bootstrap servers")] = DEFAULT_BOOTSTRAP,
    topic: Annotated[str, typer.Option(help="Input topic")] = EVENTS_TOPIC,
    dlq_topic: Annotated[str, typer.Option(help="Dead-letter topic (rejects)")] = DLQ_TOPIC,
    features_topic: Annotated[
        str, typer.Option(help="Output topic of keyed feature snapshots")
    ] = FEATURES_TOPIC,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Workers in this process")] = 1,
    recovery_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Bytewax recovery directory (created with its partitions if absent)"),
    ] = None,
    snapshot_seconds: Annotated[float, typer.Option(help="Snapshot interval")] = 2.0,
    tail: Annotated[bool, typer.Option(help="Keep consuming (--no-tail: stop at the end)")] = True,
) -> None:
    """Run the feature dataflow on Kafka: keyed snapshots to a topic, rejects to the DLQ topic."""
    from datetime import timedelta

    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    from pipelines.recovery import ensure_recovery_dir
    from pipelines.settings import FlowSettings
    from pipelines.stream import build_stream_flow

    settings = FlowSettings(
        source="kafka",
        bootstrap=bootstrap,
        events_topic=topic,
        dlq_topic=dlq_topic,
        features_topic=features_topic,
        tail=tail,
    )
    recovery = None
    if recovery_dir is not None:
        ensure_recovery_dir(recovery_dir)
        recovery = RecoveryConfig(str(recovery_dir))
    cli_main(
        build_stream_flow(settings),
        workers_per_process=workers,
        epoch_interval=timedelta(seconds=snapshot_seconds),
        recovery_config=recovery,
    )


@app.command()
def train(
    data: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option("--data", help="Simulated world dirs (events.jsonl + truth.parquet)"),
    ] = None,
    tracking_uri: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)"),
    ] = None,
    worlds_dir: Annotated[Path, typer.Option(help="Where simulated worlds are cached")] = Path(
        "data/worlds"
    ),
    package: Annotated[
        bool, typer.Option(help="Also write the packaged default models (models/packaged)")
    ] = False,
    labels: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--labels",
            help="Field labels from completed counts: a `shelfguard labels export` file "
            "(*.parquet, *.jsonl) or the service's GET /labels URL (token: $SHELFGUARD_TOKEN)",
        ),
    ] = None,
) -> None:
    """Build training sets, train both models, evaluate beside baselines, register, gate."""
    from training.train import train as run_training

    extra = None
    if labels is not None:
        extra = _field_labels(labels)
    reports = run_training(
        data=data,
        worlds_root=worlds_dir,
        tracking_uri=tracking_uri,
        package=package,
        progress=lambda msg: console.print(f"[cyan]•[/cyan] {msg}"),
        extra_labels=extra,
    )
    for report in reports:
        table = Table(title=f"{report.name} v{report.version} — {report.gate}")
        for column in ("data", "scorer", "AP", "ROC AUC", "Brier", "P@2%", "R@5%", "value R@5%"):
            table.add_column(column)
        for data_name, by_scorer in report.metrics.items():
            for scorer, m in by_scorer.items():
                table.add_row(
                    data_name,
                    scorer,
                    *(
                        f"{m[k]:.3f}"
                        for k in (
                            "average_precision",
                            "roc_auc",
                            "brier",
                            "precision_at_2pct",
                            "recall_at_5pct",
                            "value_weighted_recall_at_5pct",
                        )
                    ),
                )
        console.print(table)


def _field_labels(source: str):  # noqa: ANN202 - a pandas DataFrame
    """Training rows from a label export (file or URL); exits 2 on an unusable source."""
    from serving.errors import ShelfguardError
    from serving.labels import read_labels, training_rows

    try:
        rows, dropped = training_rows(read_labels(source, os.environ.get("SHELFGUARD_TOKEN")))
    except ShelfguardError as exc:
        raise typer.BadParameter(exc.detail, param_hint="--labels") from None
    console.print(
        f"[cyan]•[/cyan] field labels: {len(rows)} rows from {source} "
        f"({int(rows['phantom'].sum()) if len(rows) else 0} phantom), "
        f"{dropped} without a feature snapshot skipped"
    )
    return rows


@app.command()
def score(
    events: Annotated[Path, typer.Option("--events", help="Any contract-conforming JSONL file")],
    out: Annotated[Path, typer.Option("--out", help="CSV, one row per sku-location")],
    model_uri: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="MLflow URI of the phantom model (e.g. models:/phantom-inventory@champion); "
            "the stockout model is taken from the same registry alias or the package",
        ),
    ] = None,
    with_features: Annotated[
        bool,
        typer.Option(
            "--features/--no-features",
            help="Add the feature snapshot as columns feature.<name> (the approval service keeps "
            "it with the alert so count outcomes become training labels)",
        ),
    ] = True,
    explain_above: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.01,
            help="Explain (top reasons in words) the scores at or above this; 0 = every row. "
            "Explanations cost ~1-2 ms a row, the scores ~5 µs",
        ),
    ] = 0.2,
) -> None:
    """Score an event log: phantom and stockout probabilities with explanations."""
    import pandas as pd

    from models.scoring import SCORE_COLUMNS, score_features, with_feature_columns, write_csv
    from pipelines.replay import replay_file
    from training.champions import load_models

    if not events.exists():
        raise typer.BadParameter(f"{events} does not exist", param_hint="--events")
    phantom, stockout = load_models(model_uri)
    replay = replay_file(events)
    rejected = len(replay.rejections)
    features = replay.feature_table()
    if features.empty:
        scores = pd.DataFrame(columns=list(SCORE_COLUMNS))
    else:
        scores = score_features(features, phantom, stockout, explain_above)
        if with_features:
            scores = with_feature_columns(scores, features)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(scores, out)
    _print_summary(
        "score",
        {
            "keys scored": len(scores),
            "rejected lines": rejected,
            "phantom model": f"{phantom.spec.name}:{phantom.version}",
            "stockout model": f"{stockout.spec.name}:{stockout.version}",
            "phantom_score >= 0.5": int((scores["phantom_score"] >= 0.5).sum()),
            "out": str(out),
        },
    )


@app.command()
def drift(
    events: Annotated[Path, typer.Option("--events", help="Recent events (JSONL)")],
    out: Annotated[
        Path, typer.Option("--out", help="Directory for drift.html and drift.json")
    ] = Path("drift"),
    days: Annotated[int, typer.Option(help="Length of the recent window (days)")] = 7,
    model_uri: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="MLflow URI of the phantom model (default: champion or packaged)"),
    ] = None,
    tracking_uri: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Log the report to this MLflow tracking server"),
    ] = None,
) -> None:
    """Feature and prediction drift of a recent window against the training reference."""
    from training.champions import load_models
    from training.drift import drift_report

    phantom, stockout = load_models(model_uri)
    result = drift_report(events, phantom, stockout, out, days)
    if tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or Path("mlflow.db").exists():
        import mlflow

        from training import registry

        registry.configure(tracking_uri)
        with mlflow.start_run(run_name="drift"):
            mlflow.log_metric("drift_share", result.drift_share)
            mlflow.log_metric("retrain_recommended", float(result.retrain_recommended))
            mlflow.set_tag("model", f"{phantom.spec.name}:{phantom.version}")
            mlflow.log_artifact(result.html)
            mlflow.log_artifact(result.json)
    _print_summary(
        "drift",
        {
            "drifted feature share": f"{result.drift_share:.0%}",
            "drifted features": ", ".join(result.drifted_columns) or "none",
            "prediction drift": ", ".join(result.prediction_drift) or "none",
            "retraining recommended": "YES" if result.retrain_recommended else "no",
            "report": result.html,
        },
    )


@app.command("register-packaged")
def register_packaged(
    tracking_uri: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)"),
    ] = None,
) -> None:
    """Register the packaged default models in MLflow with alias champion (idempotent)."""
    from training.registry import register_packaged as run

    champions = run(tracking_uri)
    _print_summary("registry", {f"{k}@champion": f"v{v}" for k, v in champions.items()})


models_app = typer.Typer(
    help="Registered model versions: list, promote or roll back the champion.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")
TrackingUri = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)"),
]


@models_app.command("list")
def models_list(tracking_uri: TrackingUri = None) -> None:
    """Every version of both models, newest first: aliases, holdout AP at the gate, verdict."""
    from datetime import UTC, datetime

    from training.registry import MODEL_NAMES, list_versions

    table = Table(title="registered models")
    for column in ("model", "version", "aliases", "registered (UTC)", "holdout AP", "verdict"):
        table.add_column(column)
    for name in MODEL_NAMES:
        for v in list_versions(name, tracking_uri):
            when = datetime.fromtimestamp(v.created_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            table.add_row(name, v.version, ", ".join(v.aliases), when, v.holdout_ap, v.verdict[:80])
    console.print(table)


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="phantom-inventory or stockout-risk")],
    version: Annotated[str, typer.Argument(help="The version to make champion")],
    reason: Annotated[str, typer.Option(help="Why (kept as a tag on the version)")],
    by: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Who moves it (default: $USER)"),
    ] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Move the champion alias by hand: promote past the gate, or roll back to an earlier
    version. The streaming scorer switches at its next registry poll, without a restart."""
    import os
    from datetime import UTC, datetime

    from training.registry import promote

    who = by or os.environ.get("USER") or "unknown"
    try:
        done = promote(name, version, who, reason, datetime.now(UTC).isoformat(), tracking_uri)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    _print_summary(
        "models promote",
        {
            "model": name,
            "champion": f"v{done.version}",
            "previous champion": f"v{done.previous}" if done.previous else "none",
            "changed": "yes" if done.changed else "no (it already was)",
            "by": who,
        },
    )


# --------------------------------------------------------------------------------------------
# Approval service (issue 5): serve, users, alerts, audit. Settings come from SHELFGUARD_* env
# vars (serving/settings.py); --database-url overrides SHELFGUARD_DATABASE_URL.

DatabaseUrl = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="SQLAlchemy URL (default: $SHELFGUARD_DATABASE_URL or ./shelfguard.db)"),
]
users_app = typer.Typer(help="Users and API tokens of the approval service.", no_args_is_help=True)
alerts_app = typer.Typer(help="Scores into alerts (file or Kafka).", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
labels_app = typer.Typer(help="Count outcomes as training labels.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(alerts_app, name="alerts")
app.add_typer(audit_app, name="audit")
app.add_typer(labels_app, name="labels")


def _service_settings(database_url: str | None, **overrides: object):  # noqa: ANN202
    from serving.settings import ServiceSettings

    if database_url:
        overrides["database_url"] = database_url
    return ServiceSettings(**overrides)  # type: ignore[arg-type]


def _runtime(database_url: str | None):  # noqa: ANN202
    from serving.api import Runtime, default_publisher, utc_now
    from serving.webhooks import HttpxSender

    settings = _service_settings(database_url)
    runtime = Runtime(settings, utc_now, default_publisher(settings), HttpxSender())
    runtime.store.migrate()
    return runtime


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    database_url: DatabaseUrl = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Run the approval service (API, web UI at /ui, /metrics); migrates the database first."""
    import uvicorn

    if database_url:
        os.environ["SHELFGUARD_DATABASE_URL"] = database_url
    _service_settings(None)  # fail fast on bad settings (e.g. a default secret outside dev)
    uvicorn.run(
        "serving.api:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
    )


@users_app.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="User name")],
    role: Annotated[str, typer.Option(help="ops | approver | data_scientist | admin")],
    database_url: DatabaseUrl = None,
) -> None:
    """Create a user and print its API token (shown once; only its hash is stored)."""
    from datetime import UTC, datetime

    from serving import audit
    from serving.auth import Role, create_user
    from serving.store import Store

    try:
        parsed = Role(role)
    except ValueError:
        raise typer.BadParameter(
            f"unknown role {role!r}; choose one of {', '.join(r.value for r in Role)}",
            param_hint="--role",
        ) from None
    settings = _service_settings(database_url)
    store = Store(settings.database_url)
    store.migrate()
    now = datetime.now(UTC)
    with store.transaction() as session:
        _user, token = create_user(
            session, name, parsed, settings.token_pepper.get_secret_value(), now
        )
        audit.append(
            session,
            at=now,
            actor="cli",
            action="user.created",
            subject=f"user:{name}",
            payload={"role": parsed.value},
        )
    typer.echo(token)


@alerts_app.command("ingest")
def alerts_ingest(
    scores: Annotated[Path, typer.Option("--scores", help="CSV written by `shelfguard score`")],
    database_url: DatabaseUrl = None,
) -> None:
    """Turn a `shelfguard score` CSV into alerts and recommendations (bad rows dead-lettered)."""
    from serving.score_feed import ingest_csv

    if not scores.exists():
        raise typer.BadParameter(f"{scores} does not exist", param_hint="--scores")
    runtime = _runtime(database_url)
    result = ingest_csv(runtime.service, scores, actor="cli:alerts-ingest")
    _print_summary("alerts ingest", vars(result))


@alerts_app.command("consume")
def alerts_consume(
    database_url: DatabaseUrl = None,
    max_messages: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Stop after this many messages"),
    ] = None,
    idle_timeout: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="Stop when nothing arrived for this many seconds"),
    ] = None,
    group: Annotated[str, typer.Option(help="Kafka consumer group")] = "shelfguard-serving",
    metrics_port: Annotated[
        int,
        typer.Option(
            help="Serve this consumer's Prometheus metrics (scores ingested, alerts, "
            "event-to-alert latency) on 127.0.0.1:PORT/metrics; 0 = off"
        ),
    ] = 0,
) -> None:
    """Consume scores from Kafka (SHELFGUARD_SCORES_TOPIC, default inventory.scores)."""
    from serving.score_feed import consume_kafka

    runtime = _runtime(database_url)
    settings = runtime.settings
    if not settings.kafka_bootstrap:
        raise typer.BadParameter("set SHELFGUARD_KAFKA_BOOTSTRAP to consume from Kafka")
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1", registry=runtime.metrics.registry)
    result = consume_kafka(
        runtime.service,
        settings.kafka_bootstrap,
        settings.scores_topic,
        settings.scores_dlq_topic,
        group=group,
        max_messages=max_messages,
        idle_timeout_s=idle_timeout,
    )
    _print_summary("alerts consume", vars(result))


@audit_app.command("verify")
def audit_verify(database_url: DatabaseUrl = None) -> None:
    """Recompute the audit hash chain; exit 1 at the first row that does not fit."""
    from serving import audit
    from serving.store import Store

    store = Store(_service_settings(database_url).database_url)
    with store.reader() as session:
        result = audit.verify(session)
    store.dispose()
    if result.ok:
        console.print(f"audit log intact: {result.rows} rows, hash chain verified")
        return
    console.print(
        f"[red]audit log TAMPERED[/red] at seq {result.first_bad_seq}: {result.problem} "
        f"({result.rows} rows read)"
    )
    raise typer.Exit(1)


@labels_app.command("export")
def labels_export(
    out: Annotated[Path, typer.Option("--out", help="*.parquet or *.jsonl")],
    database_url: DatabaseUrl = None,
) -> None:
    """Write every count label as a training row (snapshot + labels) for `train --labels`."""
    from sqlalchemy import select

    from serving.errors import ShelfguardError
    from serving.labels import format_of, label_frame, write_labels
    from serving.store import Store
    from serving.store.tables import CountLabel

    try:
        format_of(out)
    except ShelfguardError as exc:
        raise typer.BadParameter(exc.detail, param_hint="--out") from None
    store = Store(_service_settings(database_url).database_url)
    store.migrate()
    with store.reader() as session:
        frame = label_frame(session.scalars(select(CountLabel).order_by(CountLabel.id)))
    store.dispose()
    write_labels(frame, out)
    _print_summary(
        "labels export",
        {
            "labels": len(frame),
            "with feature snapshot": int(frame["has_features"].sum()),
            "phantom (shelf empty)": int(frame["phantom"].sum()),
            "out": str(out),
        },
    )


@app.command()
def reconcile(
    events: Annotated[Path, typer.Option("--events", help="The event log (JSONL)")],
    erp: Annotated[Path, typer.Option("--erp", help="ERP balance extract (CSV or Parquet)")],
    wms: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--wms", help="WMS positions (same columns)"),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Absolute tolerance in units (mismatch when beyond it)")
    ] = 0.0,
    relative_tolerance: Annotated[
        float, typer.Option(help="Relative tolerance: fraction of the larger figure")
    ] = 0.0,
    as_of: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="ISO-8601 instant of extracts without an as_of column (default: last event)"
        ),
    ] = None,
    last_events: Annotated[int, typer.Option(help="Events kept per exception")] = 5,
    interval: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="Run every this many seconds until Ctrl-C (default: once)"),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Compare the stream's positions with ERP (and WMS) figures; store exceptions (idempotent)."""
    from datetime import UTC, datetime

    from serving.errors import ShelfguardError
    from serving.reconcile import Tolerance
    from serving.reconcile_job import RunResult, run_every, run_once

    try:
        tol = Tolerance(tolerance, relative_tolerance)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tolerance") from None
    instant = None
    if as_of is not None:
        try:
            instant = datetime.fromisoformat(as_of)
        except ValueError:
            raise typer.BadParameter(f"{as_of!r} is not ISO-8601", param_hint="--as-of") from None
        if instant.tzinfo is None:
            raise typer.BadParameter("add a zone (Z or +hh:mm)", param_hint="--as-of")
        instant = instant.astimezone(UTC)
    extracts = [("erp", erp)] + ([("wms", wms)] if wms is not None else [])
    runtime = _runtime(database_url)

    def run() -> RunResult:
        return run_once(runtime.service, events, extracts, tol, as_of=instant, last_n=last_events)

    def report(result: RunResult) -> None:
        _print_summary(
            "reconcile",
            {
                **{f"{source} keys compared": n for source, n in result.compared.items()},
                "mismatches beyond tolerance": len(result.mismatches),
                "new exceptions": len(result.created),
                "already recorded": result.already_known,
            },
        )

    try:
        if interval is None:
            report(run())
        else:
            run_every(interval, run, report)
    except ShelfguardError as exc:
        console.print(f"[red]reconcile failed:[/red] {exc.detail}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        runtime.store.dispose()


def _print_summary(title: str, values: dict) -> None:
    table = Table(title=title, show_header=False)
    for key, value in values.items():
        if isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        table.add_row(str(key), str(value))
    console.print(table)


# --------------------------------------------------------------------------------------------
# Streaming scoring and the live demo (issue 6): serving/scoring_flow.py, serving/demo.py.


@app.command("score-stream")
def score_stream(
    events: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--events", help="Read a JSONL event file (instead of --bootstrap)"),
    ] = None,
    follow: Annotated[
        bool, typer.Option(help="With --events: keep reading the file as it grows (tail -f)")
    ] = False,
    scores_out: Annotated[
        Path, typer.Option(help="With --events: score messages, one JSON object per line")
    ] = Path("scores.jsonl"),
    dlq_out: Annotated[Path, typer.Option(help="With --events: rejected lines")] = Path(
        "dlq.jsonl"
    ),
    bootstrap: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Read the Kafka topic --topic instead of a file"),
    ] = None,
    topic: Annotated[str, typer.Option(help="Input topic")] = EVENTS_TOPIC,
    dlq_topic: Annotated[str, typer.Option(help="Dead-letter topic")] = DLQ_TOPIC,
    scores_topic: Annotated[str, typer.Option(help="Output topic of score messages")] = (
        "inventory.scores"
    ),
    features_topic: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Also send feature snapshots to this topic (e.g. inventory.features)"),
    ] = None,
    tracking_uri: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="MLflow registry of the champions (default: $MLFLOW_TRACKING_URI, else "
            "./mlflow.db if present, else the packaged models without reload)"
        ),
    ] = None,
    packaged: Annotated[
        bool, typer.Option("--packaged", help="Score with the packaged models (no registry)")
    ] = False,
    poll_seconds: Annotated[
        float, typer.Option(help="Seconds between checks of the champion alias")
    ] = 30.0,
    explain_above: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="Explain scores at or above this (default: the policy's alert floor)"),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Workers in this process")] = 1,
    recovery_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Bytewax recovery directory (created with its partitions if absent)"),
    ] = None,
    snapshot_seconds: Annotated[float, typer.Option(help="Snapshot interval")] = 2.0,
    tail: Annotated[
        bool, typer.Option(help="Kafka: keep consuming (--no-tail: stop at the topic's end)")
    ] = True,
    batch_size: Annotated[int, typer.Option(help="Source batch size")] = 1000,
    close_sweep: Annotated[
        bool,
        typer.Option(
            help="Score every key again at each close, as of it (--no-close-sweep: only the "
            "keys events change; a key that stops selling then keeps its last score)"
        ),
    ] = True,
    close_offset_hours: Annotated[
        float,
        typer.Option(
            min=-23.99, max=23.99, help="The close, hours after UTC midnight (e.g. -7 for UTC+7)"
        ),
    ] = 0.0,
) -> None:
    """Score changed feature snapshots with the champion models, live (Kafka or a file)."""
    from datetime import timedelta

    from bytewax.errors import BytewaxRuntimeError
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    from pipelines.recovery import ensure_recovery_dir
    from serving.scoring_flow import ScoringSettings, build_from_settings, make_scorer

    if (events is None) == (bootstrap is None):
        raise typer.BadParameter("give exactly one of --events FILE or --bootstrap HOST:PORT")
    if explain_above is None:
        from serving.policy import load_policy

        explain_above = load_policy(_service_settings(None).policy_path).alerts.min_score
    common: dict = {
        "tracking_uri": tracking_uri,
        "use_registry": not packaged,
        "registry_poll_s": poll_seconds,
        "explain_above": explain_above,
        "batch_size": batch_size,
        "emit_features": features_topic is not None,
        "close_sweep": close_sweep,
        "close_offset_s": close_offset_hours * 3600,
    }
    if bootstrap is not None:
        settings = ScoringSettings(
            source="kafka",
            bootstrap=bootstrap,
            events_topic=topic,
            dlq_topic=dlq_topic,
            scores_topic=scores_topic,
            features_topic=features_topic or FEATURES_TOPIC,
            tail=tail,
            **common,
        )
    else:
        settings = ScoringSettings(
            source="file",
            events_file=events,
            follow=follow,
            scores_file=scores_out,
            dlq_file=dlq_out,
            **common,
        )
    scorer = make_scorer(settings)
    champions = scorer.watcher.current()
    where = scores_out if bootstrap is None else f"{bootstrap} {scores_topic}"
    console.print(
        f"score-stream ready: {champions.label(champions.phantom)}, "
        f"{champions.label(champions.stockout)} → {where}",
        highlight=False,
    )
    recovery = None
    if recovery_dir is not None:
        ensure_recovery_dir(recovery_dir)
        recovery = RecoveryConfig(str(recovery_dir))
    try:
        cli_main(
            build_from_settings(settings, scorer),
            workers_per_process=workers,
            epoch_interval=timedelta(seconds=snapshot_seconds),
            recovery_config=recovery,
        )
    except KeyboardInterrupt:
        pass
    except BytewaxRuntimeError as exc:  # Ctrl-C inside the runtime arrives wrapped
        if not isinstance(exc.__cause__, KeyboardInterrupt):
            raise
    console.print(
        f"score-stream stopped: {scorer.rows_scored} rows scored, {scorer.rows_explained} "
        f"explanations, {scorer.watcher.swaps} champion swaps",
        highlight=False,
    )


@app.command()
def demo(
    kafka: Annotated[
        bool, typer.Option("--kafka", help="Run over the local Kafka broker instead of files")
    ] = False,
    out: Annotated[Path, typer.Option(help="Working directory of the demo")] = Path("data/live"),
    stores: Annotated[int, typer.Option(help="Stores to simulate")] = 10,
    skus: Annotated[int, typer.Option(help="SKUs per store")] = 200,
    days: Annotated[int, typer.Option(help="Simulated days (ending at today's UTC midnight)")] = 30,
    seed: Annotated[int, typer.Option(help="Simulation seed")] = 1,
    seconds_per_day: Annotated[
        float, typer.Option(help="Wall seconds per simulated day of the replay")
    ] = 6.0,
    warmup_days: Annotated[
        float, typer.Option(help="Replay this many first days at once, without pacing")
    ] = 0.0,
    port: Annotated[int, typer.Option(help="Port of the service (API and UI)")] = 8000,
    mlflow_port: Annotated[
        int, typer.Option(help="Port of the MLflow UI (0: do not start it)")
    ] = 5000,
    bootstrap: Annotated[str, typer.Option(help="Kafka bootstrap (with --kafka)")] = (
        DEFAULT_BOOTSTRAP
    ),
    topic_prefix: Annotated[
        str, typer.Option(help="With --kafka: topics <prefix>.<run>.inventory.* (old ones deleted)")
    ] = "demo",
    poll_seconds: Annotated[
        float, typer.Option(help="Seconds between the flow's checks of the champion alias")
    ] = 30.0,
    tracking_uri: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="MLflow registry (default: $MLFLOW_TRACKING_URI or ./mlflow.db)"),
    ] = None,
) -> None:
    """The whole loop, live: simulate, register models, serve the UI, stream and score an
    accelerated replay, until Ctrl-C."""
    from serving.demo import DemoOptions, run_demo

    if seconds_per_day <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--seconds-per-day")
    options = DemoOptions(
        out=out,
        stores=stores,
        skus=skus,
        days=days,
        seed=seed,
        seconds_per_day=seconds_per_day,
        warmup_days=warmup_days,
        port=port,
        mlflow_port=mlflow_port,
        kafka=kafka,
        bootstrap=bootstrap,
        topic_prefix=topic_prefix,
        registry_poll_s=poll_seconds,
        tracking_uri=tracking_uri,
    )
    raise typer.Exit(run_demo(options, lambda line: print(line, flush=True)))


if __name__ == "__main__":
    app()
