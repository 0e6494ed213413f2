"""The training pipeline: data -> model -> ONNX -> registry -> bento -> gate.

The flow reads as the pipeline; each stage below it only wires tasks (plain functions, not sub-flows:
Prefect would serialise the splits' frames as sub-flow parameters on every call).
"""

from dataclasses import replace
from functools import partial
from pathlib import Path

from prefect import flow

from tasks.core.config import RunConfig
from tasks.core.errors import quiet_expected_errors
from tasks.core.locations import resolve_locations
from tasks.core.timing import stage_seconds, start_clock, timed_stage
from tasks.data.drift import load_drift_reference, measure_drift
from tasks.data.report import DataVerdict, require_valid_dataset, write_data_report
from tasks.data.resolve import ResolvedDataset, resolve_dataset
from tasks.data.split import DataSplits, split_dataset
from tasks.data.validation import validate_dataset
from tasks.data.workspace import prepare_workspace
from tasks.model.distillation import distill_model
from tasks.model.evaluation import evaluate_model
from tasks.model.pruning import ShrinkResult, prune_model
from tasks.model.selection import is_auto, select_family
from tasks.model.sweep import open_study, run_trials, summarize_sweep
from tasks.model.threshold import tune_decision_threshold
from tasks.model.training import TrainedModel, train_model
from tasks.onnx.compress import CompressionResult, compress_model, plan_compression
from tasks.onnx.export import check_parity, export_model, export_smaller_models
from tasks.onnx.goals import CompressionPlan
from tasks.onnx.runtime import ParityReport
from tasks.registry.client import ModelVersionRef, TrackingRun
from tasks.registry.lineage import describe_lineage
from tasks.registry.selection import log_selection
from tasks.registry.sweeps import log_sweep, log_trial
from tasks.registry.tracking import (
    PipelineSummary,
    close_tracking_run,
    log_compression,
    log_data_checks,
    log_dataset,
    log_spec,
    log_training,
    mark_version_errored,
    open_tracking_run,
    record_bento,
    recover_abandoned_runs,
    register_model,
    summarize_run,
)
from tasks.release.bento import build_bento
from tasks.release.gate import GateDecision, GateEvidence, score_candidate
from tasks.release.promotion import promote_if_better, request_approval
from tasks.release.serving_check import check_serving


# The default RunConfig() is what the Prefect UI pre-fills its form with; nothing mutates it.
@flow(name="training_pipeline", log_prints=True)
def training_pipeline(config: RunConfig = RunConfig()) -> PipelineSummary:  # noqa: B008
    """Train a model for the given data and spec; promote it to `production` only if it passes the gate."""
    quiet_expected_errors()  # bad data or config: its message in the logs and the Prefect UI, not a traceback
    start_clock()  # seconds per stage, for the summary
    locations = resolve_locations()
    work_dir = prepare_workspace(runs_dir=locations.runs_dir)
    run = open_tracking_run(tracking_uri=locations.tracking_uri, config=config)
    version = None
    try:
        data = resolve_dataset(config=config, default_dir=locations.home / "datasets")
        recover_abandoned_runs(
            tracking_uri=locations.tracking_uri, experiment_name=config.experiment_name, model_name=data.model_name
        )
        log_spec(run=run, spec=data.spec, origin=data.origin, work_dir=work_dir)
        splits, summary, verdict = check_data(run=run, data=data, config=config, work_dir=work_dir)
        # The model served from here on, and the spec and settings it trained with: a sweep's best trial, or the
        # family model.family auto chose.
        trained, data, config = train_and_evaluate(
            run=run, data=data, splits=splits, config=config, work_dir=work_dir, study_storage=locations.study_storage
        )
        # Compression only where it pays: the fp32 file measured against the goals decides what else is made.
        plan, parity = export_trained(splits=splits, trained=trained, config=config, work_dir=work_dir)
        shrunk = shrink_model(splits=splits, trained=trained, plan=plan, config=config, work_dir=work_dir)
        compression, parity_served = export_candidates(
            run=run,
            splits=splits,
            trained=trained,
            plan=plan,
            parity=parity,
            shrunk=shrunk,
            config=config,
            work_dir=work_dir,
        )
        version = register_candidate(
            run=run,
            data=data,
            trained=trained,
            compression=compression,
            parities=(parity, parity_served),
            summary=summary,
        )
        bento_tag = package(version=version)
        evidence = check_candidate(
            bento_tag=bento_tag,
            compression=compression,
            parity=parity,
            splits=splits,
            data=verdict,
            config=config,
            family=trained.family,
        )
        decision = release(run=run, version=version, evidence=evidence, splits=splits, config=config, work_dir=work_dir)
    except BaseException as error:  # a Ctrl-C or SIGTERM too: nothing may be left looking unfinished
        if version is not None:
            mark_version_errored(version=version, error=str(error))
        close_tracking_run(run=run, succeeded=False, error=str(error))
        raise
    close_tracking_run(run=run, succeeded=True)
    return summarize_run(run=run, version=version, decision=decision, stage_seconds=stage_seconds())


@timed_stage("data checks")
def check_data(
    run: TrackingRun, data: ResolvedDataset, config: RunConfig, work_dir: Path
) -> tuple[DataSplits, Path | None, DataVerdict]:
    """Validate against the spec's expectations, measure drift from production's data, split."""
    report_dir = work_dir / "validation"
    validation = validate_dataset(
        frame=data.dataset.frame,
        source=data.dataset.source,
        report_dir=report_dir,
        config=config.validation,
        spec=data.spec.dataset,
    )
    reference = load_drift_reference(
        tracking_uri=run.tracking_uri, model_name=data.model_name, dst_dir=work_dir / "reference"
    )
    drift = measure_drift(
        frame=data.dataset.frame,
        sha256=data.dataset.sha256,
        validation=validation,
        reference=reference,
        config=config.drift,
        out_dir=report_dir,
        spec=data.spec.dataset,
    )
    checks = write_data_report(validation=validation, drift=drift, out_dir=report_dir)
    log_dataset(run=run, dataset=data.dataset, reports=[report_dir, validation.suite, validation.result_json])
    log_data_checks(run=run, checks=checks)
    verdict = require_valid_dataset(checks=checks)
    splits = split_dataset(frame=data.dataset.frame, spec=data.spec.dataset, config=config.split)
    return splits, drift.summary_json, verdict


@timed_stage("training")
def train_and_evaluate(
    run: TrackingRun, data: ResolvedDataset, splits: DataSplits, config: RunConfig, work_dir: Path, study_storage: str
) -> tuple[TrainedModel, ResolvedDataset, RunConfig]:
    """Train the spec's model family, or sweep its settings (config.sweep.trials) and keep the best trial's model;
    tune a binary model's decision threshold on the validation rows; score it on the test rows, log curves and
    plots. Returns the model and the spec and settings it trained with."""
    if config.sweep.trials:
        trained, data, config = sweep_settings(
            run=run, data=data, splits=splits, config=config, work_dir=work_dir, study_storage=study_storage
        )
    elif is_auto(data.spec):
        trained, data = choose_family(run=run, data=data, splits=splits, config=config, work_dir=work_dir)
    else:
        trained = train_model(splits=splits, spec=data.spec, config=config.training, work_dir=work_dir)
    trained, threshold = tune_decision_threshold(trained=trained, splits=splits)
    evaluation = evaluate_model(trained=trained, splits=splits, out_dir=work_dir / "evaluation")
    log_training(run=run, splits=splits, trained=trained, evaluation=evaluation, threshold=threshold)
    return trained, data, config


def choose_family(
    run: TrackingRun, data: ResolvedDataset, splits: DataSplits, config: RunConfig, work_dir: Path
) -> tuple[TrainedModel, ResolvedDataset]:
    """model.family auto: the candidate families trained within the time budget, the best on validation (or their
    blend) kept; the spec it stands for is what is registered and served."""
    selection = select_family(splits=splits, spec=data.spec, config=config.training, work_dir=work_dir / "selection")
    log_selection(run=run, selection=selection)
    chosen = replace(data, spec=selection.spec, origin=f"{data.origin}; model.family auto chose {selection.served}")
    log_spec(run=run, spec=chosen.spec, origin=chosen.origin, work_dir=work_dir / "selection")
    return selection.trained, chosen


def sweep_settings(
    run: TrackingRun, data: ResolvedDataset, splits: DataSplits, config: RunConfig, work_dir: Path, study_storage: str
) -> tuple[TrainedModel, ResolvedDataset, RunConfig]:
    """An Optuna study of the sweep's space, each trial a task and a nested MLflow run; the best trial's model
    (trained again from its settings when an earlier run of the study found it), spec and settings."""
    study = open_study(storage=study_storage, data=data, config=config)
    trials = run_trials(
        study=study,
        splits=splits,
        spec=data.spec,
        config=config,
        work_dir=work_dir / "sweep",
        on_trial=partial(log_trial, run=run, study=study),
    )
    sweep = summarize_sweep(study=study, trials=trials, data=data, config=config, out_dir=work_dir / "sweep")
    log_sweep(run=run, sweep=sweep)
    log_spec(run=run, spec=sweep.data.spec, origin=sweep.data.origin, work_dir=work_dir / "sweep")
    trained = sweep.trained or train_model(
        splits=splits, spec=sweep.data.spec, config=sweep.config.training, work_dir=work_dir
    )
    return trained, sweep.data, sweep.config


@timed_stage("ONNX + quantization")
def export_trained(
    splits: DataSplits, trained: TrainedModel, config: RunConfig, work_dir: Path
) -> tuple[CompressionPlan, ParityReport]:
    """The trained model as ONNX with its parity check, measured against the compression goals: which of pruning,
    distillation and INT8 are worth making (tasks.onnx.goals), and why."""
    fp32_path = export_model(checkpoint_path=trained.checkpoint_path, out_dir=work_dir / "onnx")
    parity = check_parity(onnx_path=fp32_path, checkpoint_path=trained.checkpoint_path, splits=splits)
    plan = plan_compression(
        fp32_path=fp32_path, splits=splits, family=trained.family, config=config.compression, gate=config.gate
    )
    return plan, parity


@timed_stage("pruning + distillation")
def shrink_model(
    splits: DataSplits, trained: TrainedModel, plan: CompressionPlan, config: RunConfig, work_dir: Path
) -> list[ShrinkResult]:
    """Smaller torch models of the trained one where the plan says so: pruned at each level and fine-tuned, and a
    distilled student. A skipped step costs nothing (no checkpoint read, no rows prepared)."""
    shrunk = []
    if plan.runs("pruning"):
        shrunk.append(
            prune_model(
                checkpoint_path=trained.checkpoint_path,
                splits=splits,
                config=config.compression,
                training=config.training,
                out_dir=work_dir / "smaller",
            )
        )
    if plan.runs("distillation"):
        shrunk.append(
            distill_model(
                checkpoint_path=trained.checkpoint_path,
                splits=splits,
                config=config.compression.distillation,
                training=config.training,
                out_dir=work_dir / "smaller",
            )
        )
    return shrunk


@timed_stage("ONNX + quantization")
def export_candidates(
    run: TrackingRun,
    splits: DataSplits,
    trained: TrainedModel,
    plan: CompressionPlan,
    parity: ParityReport,
    shrunk: list[ShrinkResult],
    config: RunConfig,
    work_dir: Path,
) -> tuple[CompressionResult, ParityReport]:
    """The smaller models as ONNX with their parity checks, INT8 files of each torch model where the plan says so,
    one chosen on the validation rows, and the served file's parity against the torch model it came from."""
    smaller, skipped = export_smaller_models(shrunk=shrunk, splits=splits, out_dir=work_dir / "onnx")
    compression = compress_model(
        fp32_path=plan.fp32.path,
        splits=splits,
        config=config.compression,
        smaller=smaller,
        skipped=skipped,
        teacher_checkpoint=trained.checkpoint_path,
        plan=plan,
    )
    # The fp32 file served as it is (trees, or nothing smaller chosen): its parity was checked on export.
    parity_served = (
        parity
        if compression.chosen.path == plan.fp32.path
        else check_parity(
            onnx_path=compression.chosen.path, checkpoint_path=compression.chosen_checkpoint, splits=splits
        )
    )
    log_compression(run=run, compression=compression, parity_fp32=parity, parity_served=parity_served)
    return compression, parity_served


@timed_stage("registration")
def register_candidate(
    run: TrackingRun,
    data: ResolvedDataset,
    trained: TrainedModel,
    compression: CompressionResult,
    parities: tuple[ParityReport, ParityReport],
    summary: Path | None,
) -> ModelVersionRef:
    """The served candidate as a new version: its spec, lineage, signature, and the data it was trained on."""
    return register_model(
        run=run,
        model_name=data.model_name,
        spec=data.spec,
        compression=compression,
        parity_fp32=parities[0],
        parity_served=parities[1],
        lineage=describe_lineage(data=data, trained=trained),
        data_summary=summary,
    )


@timed_stage("bento build")
def package(version: ModelVersionRef) -> str:
    """The version's bento, recorded on the version."""
    bento_tag = build_bento(version=version)
    record_bento(version=version, bento_tag=bento_tag)
    return bento_tag


@timed_stage("serving check")
def check_candidate(
    bento_tag: str,
    compression: CompressionResult,
    parity: ParityReport,
    splits: DataSplits,
    data: DataVerdict,
    config: RunConfig,
    family: str,
) -> GateEvidence:
    """The bento started and probed, and the test-row scores: the evidence the gate judges."""
    serving = check_serving(
        bento_tag=bento_tag, onnx_path=compression.chosen.path, splits=splits, config=config.gate.serving
    )
    scores = score_candidate(compression=compression, splits=splits)
    return GateEvidence(
        scores=scores, compression=compression, parity=parity, serving=serving, data=data, family=family
    )


@timed_stage("gate")
def release(
    run: TrackingRun,
    version: ModelVersionRef,
    evidence: GateEvidence,
    splits: DataSplits,
    config: RunConfig,
    work_dir: Path,
) -> GateDecision:
    """Ask a person when the configuration says so, then decide under the promotion lock."""
    approval = request_approval(
        version=version, evidence=evidence, config=config.gate, splits=splits, work_dir=work_dir
    )
    return promote_if_better(
        run=run,
        version=version,
        evidence=evidence.with_approval(approval),
        config=config.gate,
        splits=splits,
        work_dir=work_dir,
    )
