"""The ``shelfguard`` command. Subcommands import their modules lazily so start-up stays fast."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

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
) -> None:
    """Simulate an omnichannel retailer: DIR/events.jsonl (arrival order) + ground truth."""
    from pipelines.simulator import SCENARIOS
    from pipelines.simulator import simulate as run_simulation

    if scenario is not None and scenario not in SCENARIOS:
        raise typer.BadParameter(
            f"unknown scenario {scenario!r}; choose one of {', '.join(sorted(SCENARIOS))}",
            param_hint="--scenario",
        )
    summary = run_simulation(
        out, seed=seed, stores=stores, skus=skus, days=days, scenario=scenario, progress=not quiet
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
) -> None:
    """Build training sets, train both models, evaluate beside baselines, register, gate."""
    from training.train import train as run_training

    reports = run_training(
        data=data,
        worlds_root=worlds_dir,
        tracking_uri=tracking_uri,
        package=package,
        progress=lambda msg: console.print(f"[cyan]•[/cyan] {msg}"),
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
) -> None:
    """Score an event log: phantom and stockout probabilities with explanations."""
    from models.scoring import score_events
    from training.train import load_model

    if not events.exists():
        raise typer.BadParameter(f"{events} does not exist", param_hint="--events")
    phantom = load_model(model_uri, "phantom-inventory")
    stockout_uri = None
    if model_uri and "phantom-inventory" in model_uri:
        stockout_uri = model_uri.replace("phantom-inventory", "stockout-risk")
    stockout = load_model(stockout_uri, "stockout-risk")
    scores, rejected = score_events(events, phantom, stockout)
    out.parent.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out, index=False)
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
    from training.drift import drift_report
    from training.train import load_model

    phantom = load_model(model_uri, "phantom-inventory")
    stockout_uri = model_uri.replace("phantom-inventory", "stockout-risk") if model_uri else None
    stockout = load_model(stockout_uri, "stockout-risk")
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
app.add_typer(users_app, name="users")
app.add_typer(alerts_app, name="alerts")
app.add_typer(audit_app, name="audit")


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
) -> None:
    """Consume scores from Kafka (SHELFGUARD_SCORES_TOPIC, default inventory.scores)."""
    from serving.score_feed import consume_kafka

    runtime = _runtime(database_url)
    settings = runtime.settings
    if not settings.kafka_bootstrap:
        raise typer.BadParameter("set SHELFGUARD_KAFKA_BOOTSTRAP to consume from Kafka")
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


def _print_summary(title: str, values: dict) -> None:
    table = Table(title=title, show_header=False)
    for key, value in values.items():
        if isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        table.add_row(str(key), str(value))
    console.print(table)


if __name__ == "__main__":
    app()
