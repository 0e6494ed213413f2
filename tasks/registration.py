"""Tracking and registry stage: the run's record in MLflow, the new version, and its promotion."""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.compression import CompressionResult
from tasks.config import RunConfig
from tasks.data import DataSplits, LoadedDataset
from tasks.evaluation import EvaluationReport
from tasks.gate import GateDecision
from tasks.onnx_model import ParityReport
from tasks.registry import (
    ModelVersionRef,
    TrackingRun,
    find_version,
    finish_tracking_run,
    log_files,
    log_metric_series,
    log_metrics,
    move_production_alias,
    register_onnx_model,
    set_run_tags,
    start_tracking_run,
    tag_model_version,
)
from tasks.training import TrainedModel


@dataclass(frozen=True)
class PipelineSummary:
    """What one pipeline run produced, for the CLI and the flow's return value."""

    tracking_uri: str
    run_id: str
    model_name: str
    version: str
    promoted: bool
    decision: GateDecision
    bento_tag: str
    compression: str
    production_version: str | None


def flatten(prefix: str, value: object) -> dict[str, str]:
    """Nested config as dotted MLflow params: training.learning_rate=0.002."""
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in flatten(f"{prefix}{key}.", sub).items()}
    return {prefix.rstrip("."): str(value)}


@task(name="open_tracking_run", cache_policy=NO_CACHE)
def open_tracking_run(tracking_uri: str, config: RunConfig) -> TrackingRun:
    """Create this pipeline run's MLflow run, tagged with the Prefect flow run it belongs to."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    tags = {"prefect_flow_run_id": str(flow_run.get_id() or "none"), "pipeline": "training_pipeline"}
    return start_tracking_run(
        tracking_uri, config.experiment_name, f"train-{stamp}", flatten("", config.model_dump()), tags
    )


@task(name="log_dataset", cache_policy=NO_CACHE)
def log_dataset(run: TrackingRun, dataset: LoadedDataset, reports: list[Path]) -> None:
    """Record the data fingerprint and attach the validation result and Data Docs."""
    set_run_tags(run, {"data_sha256": dataset.sha256, "data_source": dataset.source, "data_rows": str(dataset.rows)})
    log_files(run, [p for p in reports if p.exists()], "validation")


@task(name="log_training", cache_policy=NO_CACHE)
def log_training(run: TrackingRun, splits: DataSplits, trained: TrainedModel, evaluation: EvaluationReport) -> None:
    """Per-epoch curves, test metrics and plots, each in as few calls as possible."""
    curves = [
        (name, value, m.epoch)
        for m in trained.history
        for name, value in (("train_loss", m.train_loss), ("val_loss", m.val_loss), ("val_accuracy", m.val_accuracy))
    ]
    log_metric_series(run, curves)
    sizes = {f"rows_{k}": float(v) for k, v in splits.sizes().items()}
    log_metrics(
        run, {**evaluation.metrics(), **sizes, "best_epoch": trained.best_epoch, "train_seconds": trained.seconds}
    )
    set_run_tags(run, {"device": trained.device})
    log_files(run, [evaluation.confusion_png, evaluation.loss_curve_png, trained.checkpoint_path], "evaluation")


@task(name="log_compression", cache_policy=NO_CACHE)
def log_compression(
    run: TrackingRun, compression: CompressionResult, parity_fp32: ParityReport, parity_served: ParityReport
) -> None:
    """Each candidate's size, accuracy and latency, the choice, and the parity figures."""
    metrics = {
        "parity_fp32_max_abs_logit_diff": parity_fp32.max_abs_logit_diff,
        "parity_fp32_argmax_agreement": parity_fp32.argmax_agreement,
        "parity_served_argmax_agreement": parity_served.argmax_agreement,
        "parity_served_max_abs_logit_diff": parity_served.max_abs_logit_diff,
    }
    for c in compression.candidates:
        key = c.name.replace("-", "_")
        metrics |= {
            f"{key}_size_bytes": c.size_bytes,
            f"{key}_accuracy": c.accuracy,
            f"{key}_latency_ms": c.latency_ms_per_batch,
        }
    log_metrics(run, metrics)
    set_run_tags(run, {"compression_choice": compression.chosen.name})
    log_files(run, [c.path for c in compression.candidates], "onnx_candidates")
    create_markdown_artifact(key="compression", markdown=compression.table_markdown(), description="INT8 candidates")


@task(name="register_model", cache_policy=NO_CACHE)
def register_model(
    run: TrackingRun,
    model_name: str,
    compression: CompressionResult,
    parity_fp32: ParityReport,
    parity_served: ParityReport,
    dataset: LoadedDataset,
    splits: DataSplits,
) -> ModelVersionRef:
    """Register the serving candidate as a new version; the gate verdict is 'pending' until decided."""
    chosen = compression.chosen
    tags = {
        "gate_verdict": "pending",
        "test_accuracy": f"{chosen.accuracy:.6f}",
        "compression": chosen.name,
        "model_size_bytes": str(chosen.size_bytes),
        "parity_fp32_max_abs_logit_diff": f"{parity_fp32.max_abs_logit_diff:.3e}",
        "parity_fp32_argmax_agreement": f"{parity_fp32.argmax_agreement:.6f}",
        "parity_served_argmax_agreement": f"{parity_served.argmax_agreement:.6f}",
        "data_sha256": dataset.sha256,
    }
    description = f"{chosen.name} ONNX, test accuracy {chosen.accuracy:.4f}. {compression.reason}"
    return register_onnx_model(run, chosen.path, model_name, splits.x_test[:2], tags, description)


@task(name="record_bento", cache_policy=NO_CACHE)
def record_bento(version: ModelVersionRef, bento_tag: str) -> ModelVersionRef:
    return tag_model_version(version, {"bento_tag": bento_tag})


@task(name="current_production", cache_policy=NO_CACHE)
def current_production(tracking_uri: str, model_name: str) -> ModelVersionRef | None:
    return find_version(tracking_uri, model_name)


@task(name="promote_model", cache_policy=NO_CACHE)
def promote_model(
    run: TrackingRun, version: ModelVersionRef, decision: GateDecision, work_dir: Path
) -> ModelVersionRef:
    """Record the gate report on the version and run; move `production` only when the gate passed."""
    report_json = decision.write_json(work_dir / "gate_report.json")
    (work_dir / "gate_report.md").write_text(decision.report_markdown())
    log_files(run, [report_json, work_dir / "gate_report.md"], "gate")
    tags = {"gate_verdict": decision.verdict, "gate_reason": decision.reason}
    tags |= {
        f"gate.{c.name}": f"{c.value:.6g} {c.comparison} {c.threshold:.6g}: {'pass' if c.passed else 'FAIL'}"
        for c in decision.checks
    }
    tagged = tag_model_version(version, tags, description=decision.report_markdown())
    if decision.promote:
        move_production_alias(tagged)
    set_run_tags(run, {"gate_verdict": decision.verdict, "model_version": version.version})
    create_markdown_artifact(key="gate-report", markdown=decision.report_markdown(), description="Promotion gate")
    return tagged


@task(name="mark_version_errored", cache_policy=NO_CACHE)
def mark_version_errored(version: ModelVersionRef, error: str) -> None:
    """A stage after registration failed: say so on the version, so nobody mistakes it for a candidate."""
    tag_model_version(version, {"gate_verdict": "error", "gate_reason": error[:4000]})


@task(name="close_tracking_run", cache_policy=NO_CACHE)
def close_tracking_run(run: TrackingRun, succeeded: bool, error: str | None = None) -> None:
    if error:
        set_run_tags(run, {"error": error[:4000]})
    finish_tracking_run(run, succeeded)


@task(name="summarize_run", cache_policy=NO_CACHE)
def summarize_run(run: TrackingRun, version: ModelVersionRef, decision: GateDecision) -> PipelineSummary:
    production = find_version(run.tracking_uri, version.name)
    return PipelineSummary(
        tracking_uri=run.tracking_uri,
        run_id=run.run_id,
        model_name=version.name,
        version=version.version,
        promoted=decision.promote,
        decision=decision,
        bento_tag=version.tags.get("bento_tag", ""),
        compression=version.tags.get("compression", ""),
        production_version=production.version if production else None,
    )
