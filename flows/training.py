"""The training pipeline: data -> model -> ONNX -> registry -> bento -> gate.

The flow reads as the pipeline; each stage below it only wires tasks (plain functions, not sub-flows: Prefect
would serialise the splits' frames as sub-flow parameters on every call). See docs/architecture.md.
"""

from functools import partial

from prefect import flow

from tasks.core.config import RunConfig
from tasks.core.errors import quiet_expected_errors
from tasks.core.timing import timed_stage
from tasks.data.drift import measure_drift, read_drift_reference
from tasks.data.parts import DataSplits
from tasks.data.report import require_valid_dataset, write_data_report
from tasks.data.split import CheckedData, split_dataset
from tasks.data.validation import validate_dataset
from tasks.model.distillation import distill_model
from tasks.model.evaluation import evaluate_model
from tasks.model.lineage import describe_lineage
from tasks.model.outcome import EvaluatedModel
from tasks.model.pruning import ShrinkResult, prune_model
from tasks.model.resolve import ResolvedDataset, resolve_dataset
from tasks.model.selection import is_auto, select_family
from tasks.model.sweep import StudyRef, TrialResult, open_study, run_trials, summarize_sweep, trial_record
from tasks.model.threshold import tune_decision_threshold
from tasks.model.training import TrainedModel, train_model
from tasks.onnx.compress import compress_model, plan_compression
from tasks.onnx.export import check_parity, export_model, export_smaller_models
from tasks.onnx.goals import CompressionPlan
from tasks.onnx.runtime import ParityReport
from tasks.onnx.served import ServedCandidate, serve_candidate
from tasks.registry.client import ModelVersionRef
from tasks.registry.tracking import RunContext, tag_version, tracking_run
from tasks.release.bento import build_bento
from tasks.release.gate import GateDecision, GateEvidence, score_candidate
from tasks.release.promotion import promote_if_better, request_approval
from tasks.release.serving_check import check_serving
from tasks.release.summary import PipelineSummary, summarize_run


# The default RunConfig() is what the Prefect UI pre-fills its form with; nothing mutates it.
@flow(name="training_pipeline", log_prints=True)
def training_pipeline(config: RunConfig = RunConfig()) -> PipelineSummary:  # noqa: B008
    """Train a model for the given data and spec; promote it to `production` only if it passes the gate."""
    quiet_expected_errors()  # bad data or config: its message in the logs and the Prefect UI, not a traceback
    with tracking_run(config) as run:
        data = resolve_dataset(config=config, default_dir=run.locations.datasets_dir)
        run.recover_abandoned(data.model_name)
        run.report(data)
        checked = check_data(run, data, config)
        # The model served from here on, and the spec and settings it trained with: a sweep's best trial, or the
        # family model.family auto chose.
        model = train_and_evaluate(run, data, checked.splits, config)
        # Compression only where it pays: the fp32 file measured against the goals decides what else is made.
        plan, parity = export_trained(run, checked.splits, model)
        shrunk = shrink_model(checked.splits, model.trained, plan, model.config, run)
        served = export_candidates(run, checked.splits, model, plan, parity, shrunk)
        version = register_candidate(run, model, served, checked)
        bento_tag = package(version)
        evidence = check_candidate(bento_tag, served, checked, model)
        decision = release(run, version, evidence, checked.splits, model.config)
        return summarize_run(run=run, version=version, decision=decision)


@timed_stage("data checks")
def check_data(run: RunContext, data: ResolvedDataset, config: RunConfig) -> CheckedData:
    """Validate against the spec's expectations, measure drift from production's data, split."""
    frame, spec, report_dir = data.dataset.frame, data.spec.dataset, run.folder("validation")
    validation = validate_dataset(
        frame=frame, source=data.dataset.source, report_dir=report_dir, config=config.validation, spec=spec
    )
    reference = read_drift_reference(stored=run.production_data_summary(data.model_name))
    drift = measure_drift(
        frame=frame,
        sha256=data.dataset.sha256,
        validation=validation,
        reference=reference,
        config=config.drift,
        out_dir=report_dir,
        spec=spec,
    )
    checks = write_data_report(validation=validation, drift=drift, out_dir=report_dir)
    run.report(checks)
    verdict = require_valid_dataset(checks=checks)
    splits = split_dataset(frame=frame, spec=spec, config=config.split)
    return CheckedData(splits=splits, verdict=verdict, summary=drift.summary_json)


@timed_stage("training")
def train_and_evaluate(run: RunContext, data: ResolvedDataset, splits: DataSplits, config: RunConfig) -> EvaluatedModel:
    """Train the spec's model family, or sweep its settings (config.sweep.trials) and keep the best trial's model;
    tune a binary model's decision threshold on the validation rows; score it on the test rows."""
    if config.sweep.trials:
        trained, data, config = sweep_settings(run, data, splits, config)
    elif is_auto(data.spec):
        trained, data = choose_family(run, data, splits, config)
    else:
        trained = train_model(splits=splits, spec=data.spec, config=config.training, work_dir=run.work_dir)
    trained, threshold = tune_decision_threshold(trained=trained, splits=splits)
    evaluation = evaluate_model(trained=trained, splits=splits, out_dir=run.folder("evaluation"))
    model = EvaluatedModel(trained, data, config, evaluation, threshold, splits.sizes())
    run.report(model)
    return model


def choose_family(
    run: RunContext, data: ResolvedDataset, splits: DataSplits, config: RunConfig
) -> tuple[TrainedModel, ResolvedDataset]:
    """model.family auto: the candidate families trained within the time budget, the best on validation (or their
    blend) kept; the spec it stands for is what is registered and served."""
    selection = select_family(splits=splits, spec=data.spec, config=config.training, work_dir=run.folder("selection"))
    run.report(selection)
    chosen = data.with_spec(selection.spec, f"model.family auto chose {selection.served}")
    run.report(chosen)
    return selection.trained, chosen


def sweep_settings(
    run: RunContext, data: ResolvedDataset, splits: DataSplits, config: RunConfig
) -> tuple[TrainedModel, ResolvedDataset, RunConfig]:
    """An Optuna study of the sweep's space, each trial a task and a nested MLflow run; the best trial's model
    (trained again from its settings when an earlier run of the study found it), spec and settings."""
    study = open_study(storage=run.locations.study_storage, data=data, config=config)
    trials = run_trials(
        study=study,
        splits=splits,
        spec=data.spec,
        config=config,
        work_dir=run.folder("sweep"),
        on_trial=partial(report_trial, run=run, study=study),
    )
    sweep = summarize_sweep(study=study, trials=trials, data=data, config=config, out_dir=run.folder("sweep"))
    run.report(sweep)
    run.report(sweep.data)
    trained = sweep.trained or train_model(
        splits=splits, spec=sweep.data.spec, config=sweep.config.training, work_dir=run.work_dir
    )
    return trained, sweep.data, sweep.config


def report_trial(trial: TrialResult, run: RunContext, study: StudyRef) -> str:
    """Each trial as it ends: a nested run under the pipeline's."""
    return run.report_child(trial_record(trial, study))


@timed_stage("ONNX + quantization")
def export_trained(run: RunContext, splits: DataSplits, model: EvaluatedModel) -> tuple[CompressionPlan, ParityReport]:
    """The trained model as ONNX with its parity check, measured against the compression goals: which of pruning,
    distillation and INT8 are worth making (tasks.onnx.goals), and why."""
    checkpoint = model.trained.checkpoint_path
    fp32_path = export_model(checkpoint_path=checkpoint, out_dir=run.folder("onnx"))
    parity = check_parity(onnx_path=fp32_path, checkpoint_path=checkpoint, splits=splits)
    config = model.config
    plan = plan_compression(
        fp32_path=fp32_path, splits=splits, family=model.trained.family, config=config.compression, gate=config.gate
    )
    return plan, parity


@timed_stage("pruning + distillation")
def shrink_model(
    splits: DataSplits, trained: TrainedModel, plan: CompressionPlan, config: RunConfig, run: RunContext
) -> list[ShrinkResult]:
    """Smaller torch models of the trained one where the plan says so: pruned at each level and fine-tuned, and a
    distilled student. A skipped step costs nothing (no checkpoint read, no rows prepared, no folder made)."""
    shrunk = []
    if plan.runs("pruning"):
        shrunk.append(
            prune_model(
                checkpoint_path=trained.checkpoint_path,
                splits=splits,
                config=config.compression,
                training=config.training,
                out_dir=run.folder("smaller"),
            )
        )
    if plan.runs("distillation"):
        shrunk.append(
            distill_model(
                checkpoint_path=trained.checkpoint_path,
                splits=splits,
                config=config.compression.distillation,
                training=config.training,
                out_dir=run.folder("smaller"),
            )
        )
    return shrunk


@timed_stage("ONNX + quantization")
def export_candidates(
    run: RunContext,
    splits: DataSplits,
    model: EvaluatedModel,
    plan: CompressionPlan,
    parity: ParityReport,
    shrunk: list[ShrinkResult],
) -> ServedCandidate:
    """The smaller models as ONNX with their parity checks, INT8 files of each torch model where the plan says so,
    one chosen on the validation rows, and the served file's parity against the torch model it came from."""
    smaller, skipped = export_smaller_models(shrunk=shrunk, splits=splits, out_dir=run.folder("onnx"))
    compression = compress_model(
        fp32_path=plan.fp32.path,
        splits=splits,
        config=model.config.compression,
        smaller=smaller,
        skipped=skipped,
        teacher_checkpoint=model.trained.checkpoint_path,
        plan=plan,
    )
    served = serve_candidate(compression=compression, parity_fp32=parity, splits=splits)
    run.report(served)
    return served


@timed_stage("registration")
def register_candidate(
    run: RunContext, model: EvaluatedModel, served: ServedCandidate, checked: CheckedData
) -> ModelVersionRef:
    """The served candidate as a new version: its spec, lineage, signature, and the data it was trained on."""
    lineage = describe_lineage(data=model.data, trained=model.trained)
    data = model.data
    return run.register(served.registration(data.model_name, data.spec, lineage, checked.summary))


@timed_stage("bento build")
def package(version: ModelVersionRef) -> str:
    """The version's bento, recorded on the version."""
    bento_tag = build_bento(version=version)
    tag_version(version=version, tags={"bento_tag": bento_tag})
    return bento_tag


@timed_stage("serving check")
def check_candidate(
    bento_tag: str, served: ServedCandidate, checked: CheckedData, model: EvaluatedModel
) -> GateEvidence:
    """The bento started and probed, and the test-row scores: the evidence the gate judges."""
    splits, compression = checked.splits, served.compression
    serving = check_serving(bento_tag=bento_tag, onnx_path=served.path, splits=splits, config=model.config.gate.serving)
    return GateEvidence(
        scores=score_candidate(compression=compression, splits=splits),
        compression=compression,
        parity=served.parity_fp32,
        serving=serving,
        data=checked.verdict,
        family=model.trained.family,
    )


@timed_stage("gate")
def release(
    run: RunContext, version: ModelVersionRef, evidence: GateEvidence, splits: DataSplits, config: RunConfig
) -> GateDecision:
    """Ask a person when the configuration says so, then decide under the promotion lock."""
    approval = request_approval(
        version=version, evidence=evidence, config=config.gate, splits=splits, work_dir=run.work_dir
    )
    return promote_if_better(
        run=run.tracking,
        version=version,
        evidence=evidence.with_approval(approval),
        config=config.gate,
        splits=splits,
        work_dir=run.work_dir,
    )
