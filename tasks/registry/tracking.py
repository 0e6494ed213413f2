"""Tracking and registry stage: the run's record in MLflow, the new version, and its promotion."""

import os
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from prefect import task
from prefect.artifacts import create_image_artifact, create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.core.config import RunConfig
from tasks.core.errors import TRANSIENT_RETRIES, transient_only
from tasks.core.keys import key_id, load_signing_key, sign, signed_payload
from tasks.core.processes import current_owner
from tasks.core.spec import Spec
from tasks.data.files import LoadedDataset, file_sha256
from tasks.data.report import DataCheckReport
from tasks.data.split import DataSplits
from tasks.model.evaluation import EvaluationReport
from tasks.model.loop import EpochMetrics
from tasks.model.threshold import ThresholdChoice
from tasks.model.training import TrainedModel
from tasks.onnx.compress import CompressionResult
from tasks.onnx.runtime import ParityReport
from tasks.registry.client import (
    DATA_SUMMARY_TAG,
    ModelVersionRef,
    TrackingRun,
    find_version,
    finish_tracking_run,
    get_version,
    log_data_summary,
    log_files,
    log_metric_series,
    log_metrics,
    register_onnx_model,
    run_artifact_image_url,
    run_artifact_link,
    set_run_tags,
    start_tracking_run,
    tag_model_version,
)
from tasks.registry.lineage import Lineage
from tasks.registry.recovery import OWNER_TAG, recover_abandoned
from tasks.release.gate import GateDecision


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
    family: str  # the served model's family (what model.family auto chose)
    stage_seconds: dict[str, float]  # per stage, and "_started_at": when the flow's body began (wall clock)


def flatten(prefix: str, value: object) -> dict[str, str]:
    """Nested config as dotted MLflow params: training.learning_rate=0.002."""
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in flatten(f"{prefix}{key}.", sub).items()}
    return {prefix.rstrip("."): str(value)}


@task(name="open_tracking_run", cache_policy=NO_CACHE, retry_condition_fn=transient_only, **TRANSIENT_RETRIES)
def open_tracking_run(tracking_uri: str, config: RunConfig) -> TrackingRun:
    """Create this pipeline run's MLflow run, tagged with the Prefect flow run it belongs to."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    tags = {
        "prefect_flow_run_id": str(flow_run.get_id() or "none"),
        "pipeline": "training_pipeline",
        OWNER_TAG: current_owner(),  # a later run tells from it whether this one died (recovery.py)
    }
    return start_tracking_run(
        tracking_uri, config.experiment_name, f"train-{stamp}", flatten("", config.model_dump()), tags
    )


@task(name="recover_abandoned_runs", cache_policy=NO_CACHE)
def recover_abandoned_runs(tracking_uri: str, experiment_name: str, model_name: str) -> int:
    """Mark what earlier runs that died left behind (versions, MLflow runs, Prefect flow runs); returns how many."""
    recovered = recover_abandoned(tracking_uri, experiment_name, model_name)
    for line in recovered.lines:
        print(line)
    if recovered.flow_run_ids:
        mark_flow_runs_crashed(recovered.flow_run_ids)
    return len(recovered.lines)


def mark_flow_runs_crashed(flow_run_ids: tuple[str, ...]) -> None:
    """Prefect flow runs still Running (or Pending, Paused) whose process died: Crashed, with the reason."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        for flow_run_id in flow_run_ids:
            try:
                found = client.read_flow_run(UUID(flow_run_id))
            except (ObjectNotFound, ValueError):
                continue  # another Prefect database, or no longer there
            if found.state is None or not found.state.is_final():
                message = "the process running this flow run died (found by a later run)"
                client.set_flow_run_state(found.id, Crashed(message=message), force=True)
                print(f"marked Prefect flow run {found.name} ({flow_run_id}) Crashed")


@task(name="log_dataset", cache_policy=NO_CACHE, retry_condition_fn=transient_only, **TRANSIENT_RETRIES)
def log_dataset(run: TrackingRun, dataset: LoadedDataset, reports: list[Path]) -> None:
    """Record the data fingerprint and attach the validation result and Data Docs."""
    set_run_tags(run, {"data_sha256": dataset.sha256, "data_source": dataset.source, "data_rows": str(dataset.rows)})
    # Report files of a cached validation live in the earlier run's folder: logged by name, once.
    folders = [p for p in reports if p.is_dir()]
    files = [p for p in reports if p.is_file() and not any(folder in p.parents for folder in folders)]
    log_files(run, folders + files, "validation")


@task(name="log_data_checks", cache_policy=NO_CACHE, retry_condition_fn=transient_only, **TRANSIENT_RETRIES)
def log_data_checks(run: TrackingRun, checks: DataCheckReport) -> str:
    """Validation and drift figures on the MLflow run, and Prefect artifacts linking the report; returns the link.

    The report files themselves reach the run through log_dataset (the validation folder).
    """
    log_metrics(run, checks.metrics())
    set_run_tags(run, checks.tags())
    link = run_artifact_link(run, f"validation/{checks.html.parent.name}/{checks.html.name}")
    create_link_artifact(key="data-report", link=link, link_text=checks.html.name, description="Data check report")
    create_markdown_artifact(key="data-check", markdown=checks.markdown(link), description="Validation and drift")
    return link


@task(name="log_spec", cache_policy=NO_CACHE, retry_condition_fn=transient_only, **TRANSIENT_RETRIES)
def log_spec(run: TrackingRun, spec: Spec, origin: str, work_dir: Path) -> Path:
    """The spec this run trained with, as the YAML a person reviews, on the run (and later the version)."""
    path = work_dir / "spec.yaml"
    path.write_text(spec.to_yaml(header=f"# Greenlight spec used by this run ({origin})\n"))
    dataset = spec.dataset
    tags = {
        "spec_origin": origin,
        "task": dataset.task,
        "target": dataset.target.name,
        "model_family": spec.model.family,
        "features": ", ".join(f"{f.name}:{f.type}" for f in dataset.features)[:5000],
    }
    set_run_tags(run, tags)
    log_files(run, [path], "spec")
    return path


def epoch_curves(history: tuple[EpochMetrics, ...]) -> list[tuple[str, float, int]]:
    """(metric, value, epoch) points of a fit's history: train_loss, val_loss, val_metric per epoch."""
    return [
        (name, float(value), m.epoch)
        for m in history
        for name, value in asdict(m).items()
        if name != "epoch" and isinstance(value, int | float)
    ]


def threshold_record(choice: ThresholdChoice | None) -> tuple[dict[str, float], dict[str, str]]:
    """A binary model's decision threshold as metrics (the threshold, the validation minority F1 at argmax and at
    the best cut) and a tag saying why it was kept or not; nothing for other tasks."""
    if choice is None or not choice.minority:
        return {}, {}
    metrics = {
        "decision_threshold": choice.threshold,
        "validation_minority_f1_at_argmax": choice.f1_at_argmax,
        "validation_minority_f1_at_best_threshold": choice.f1_at_best,
    }
    return metrics, {"decision_threshold": choice.reason[:5000]}


@task(name="log_training", cache_policy=NO_CACHE, retry_condition_fn=transient_only, **TRANSIENT_RETRIES)
def log_training(
    run: TrackingRun,
    splits: DataSplits,
    trained: TrainedModel,
    evaluation: EvaluationReport,
    threshold: ThresholdChoice | None = None,
) -> None:
    """Per-epoch curves, test metrics (balanced accuracy, ROC AUC, PR AUC and minority F1 among them, where the
    test rows define them) and plots, and the decision threshold served, each in as few calls as possible."""
    log_metric_series(run, epoch_curves(trained.history))
    sizes = {f"rows_{k}": float(v) for k, v in splits.sizes().items()}
    chosen, why = threshold_record(threshold)
    log_metrics(
        run,
        {**evaluation.metrics(), **sizes, **chosen, "best_epoch": trained.best_epoch, "train_seconds": trained.seconds},
    )
    set_run_tags(run, {"device": trained.device, **why})
    plots = [getattr(evaluation, f.name) for f in fields(evaluation) if isinstance(getattr(evaluation, f.name), Path)]
    log_files(run, [*plots, trained.checkpoint_path], "evaluation")


@task(name="log_compression", cache_policy=NO_CACHE, retry_condition_fn=transient_only, **TRANSIENT_RETRIES)
def log_compression(
    run: TrackingRun, compression: CompressionResult, parity_fp32: ParityReport, parity_served: ParityReport
) -> None:
    """Each candidate's size, validation metric and latency, the choice, and the parity figures."""
    metrics = {
        "parity_fp32_max_abs_diff": parity_fp32.max_abs_diff,
        "parity_fp32_agreement": parity_fp32.agreement,
        "parity_served_max_abs_diff": parity_served.max_abs_diff,
        "parity_served_agreement": parity_served.agreement,
    }
    for c in compression.candidates:
        key = c.name.replace("-", "_").replace("+", "_")
        metrics |= {
            f"{key}_size_bytes": c.size_bytes,
            f"{key}_validation_metric": c.metric,
            f"{key}_latency_ms": c.latency_ms_per_batch,
            f"{key}_latency_ms_batch1": c.latency_ms_batch1,
        }
    log_metrics(run, metrics)
    set_run_tags(run, {"compression_choice": compression.chosen.name, **compression.step_tags()})
    log_files(run, [c.path for c in compression.candidates], "onnx_candidates")
    if compression.chosen.source != "fp32" and compression.chosen_checkpoint is not None:
        # The served file came from a pruned or distilled model: keep that torch model beside the trained one's.
        log_files(run, [compression.chosen_checkpoint], "compression")
    markdown = compression.table_markdown()
    if compression.plot is not None:
        log_files(run, [compression.plot], "compression")
        link = run_artifact_link(run, f"compression/{compression.plot.name}")
        markdown += f"\n\n[Candidates: validation metric against latency, and their Pareto front]({link})"
        image = run_artifact_image_url(run, f"compression/{compression.plot.name}")
        if image is not None:  # a tracking server: the Prefect UI shows the plot itself
            create_image_artifact(image_url=image, key="compression-plot", description="Compression candidates")
    create_markdown_artifact(key="compression", markdown=markdown, description="Compression candidates")


@task(name="register_model", cache_policy=NO_CACHE, retry_condition_fn=transient_only, **TRANSIENT_RETRIES)
def register_model(
    run: TrackingRun,
    model_name: str,
    spec: Spec,
    compression: CompressionResult,
    parity_fp32: ParityReport,
    parity_served: ParityReport,
    lineage: Lineage,
    data_summary: Path | None = None,
) -> ModelVersionRef:
    """Register the serving candidate, with its spec, as a new version; the gate verdict is 'pending' until decided.

    data_summary (tasks.data.drift) is stored with the version: the reference later runs measure drift against.
    """
    chosen = compression.chosen
    tags = {
        "gate_verdict": "pending",
        "task": spec.dataset.task,
        "target": spec.dataset.target.name,
        "model_family": spec.model.family,
        "validation_metric": f"{chosen.metric:.6f}",
        "compression": chosen.name,
        "model_size_bytes": str(chosen.size_bytes),
        "parity_fp32_max_abs_diff": f"{parity_fp32.max_abs_diff:.3e}",
        "parity_fp32_agreement": f"{parity_fp32.agreement:.6f}",
        "parity_served_agreement": f"{parity_served.agreement:.6f}",
        "data_sha256": lineage.data_sha256,
        "spec": f"runs:/{run.run_id}/spec/spec.yaml",
        # Verified by the service before it serves the file: what was gated is what answers.
        "onnx_sha256": file_sha256(chosen.path),
        OWNER_TAG: current_owner(),
        **lineage.tags(),
    }
    if data_summary is not None:
        tags[DATA_SUMMARY_TAG] = log_data_summary(run, data_summary)
    signing_key = load_signing_key(os.environ)  # read before registering: a bad key file registers nothing
    description = f"{chosen.name} ONNX, validation metric {chosen.metric:.4f}. {compression.reason}"
    version = register_onnx_model(run, chosen.path, model_name, spec, tags, description)
    if signing_key is None:
        return tag_model_version(version, {"signature": "none"})
    payload = signed_payload(tags["onnx_sha256"], spec.model_dump(mode="json"), model_name, version.version)
    signed = {"signature": sign(signing_key, payload), "signature_key_id": key_id(signing_key.public_key())}
    return tag_model_version(version, signed)


@task(name="record_bento", cache_policy=NO_CACHE, retry_condition_fn=transient_only, **TRANSIENT_RETRIES)
def record_bento(version: ModelVersionRef, bento_tag: str) -> ModelVersionRef:
    return tag_model_version(version, {"bento_tag": bento_tag})


@task(name="mark_version_errored", cache_policy=NO_CACHE, retry_condition_fn=transient_only, **TRANSIENT_RETRIES)
def mark_version_errored(version: ModelVersionRef, error: str) -> None:
    """A stage after registration failed: say so on the version, so nobody mistakes it for a candidate."""
    tag_model_version(version, {"gate_verdict": "error", "gate_reason": error[:4000]})


@task(name="close_tracking_run", cache_policy=NO_CACHE, retry_condition_fn=transient_only, **TRANSIENT_RETRIES)
def close_tracking_run(run: TrackingRun, succeeded: bool, error: str | None = None) -> None:
    if error:
        set_run_tags(run, {"error": error[:4000]})
    finish_tracking_run(run, succeeded)


@task(name="summarize_run", cache_policy=NO_CACHE)
def summarize_run(
    run: TrackingRun, version: ModelVersionRef, decision: GateDecision, stage_seconds: dict[str, float]
) -> PipelineSummary:
    """What the CLI prints: the run, the version, the decision, where production stands now, and the time
    each stage took (also on the MLflow run, as stage_seconds.<stage>)."""
    timings = {name: seconds for name, seconds in stage_seconds.items() if not name.startswith("_")}
    log_metrics(run, {f"stage_seconds.{name.replace(' ', '_').replace('+', 'and')}": s for name, s in timings.items()})
    current = get_version(version.tracking_uri, version.name, version.version)
    production = find_version(run.tracking_uri, version.name)
    return PipelineSummary(
        tracking_uri=run.tracking_uri,
        run_id=run.run_id,
        model_name=version.name,
        version=version.version,
        promoted=decision.promote,
        decision=decision,
        bento_tag=current.tags.get("bento_tag", ""),
        compression=current.tags.get("compression", ""),
        production_version=production.version if production else None,
        family=current.tags.get("model_family", ""),
        stage_seconds=stage_seconds,
    )
