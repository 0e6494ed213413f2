"""The training pipeline: validate -> train -> evaluate -> export -> compress -> register -> build -> gate."""

from prefect import flow

from tasks.core.config import RunConfig
from tasks.core.locations import resolve_locations
from tasks.data.drift import load_drift_reference, measure_drift
from tasks.data.files import load_dataset, split_dataset
from tasks.data.report import require_valid_dataset, write_data_report
from tasks.data.validation import validate_dataset
from tasks.data.workspace import prepare_workspace
from tasks.model.evaluation import evaluate_model
from tasks.model.training import train_model
from tasks.onnx.compress import compress_model
from tasks.onnx.export import check_parity, export_model
from tasks.registry.tracking import (
    PipelineSummary,
    close_tracking_run,
    log_compression,
    log_data_checks,
    log_dataset,
    log_training,
    mark_version_errored,
    open_tracking_run,
    record_bento,
    register_model,
    summarize_run,
)
from tasks.release.bento import build_bento
from tasks.release.gate import score_candidate
from tasks.release.promotion import promote_if_better, request_approval
from tasks.release.serving_check import check_serving


# The default RunConfig() is what the Prefect UI pre-fills its form with; nothing mutates it.
@flow(name="training_pipeline", log_prints=True)
def training_pipeline(config: RunConfig = RunConfig()) -> PipelineSummary:  # noqa: B008
    """Train a digits classifier and promote it to `production` only if it passes the gate."""
    locations = resolve_locations()
    work_dir = prepare_workspace(runs_dir=locations.runs_dir)
    run = open_tracking_run(tracking_uri=locations.tracking_uri, config=config)
    version = None
    try:
        dataset = load_dataset(data_path=config.data_path, default_dir=locations.home / "datasets")
        validation = validate_dataset(
            frame=dataset.frame, source=dataset.source, report_dir=work_dir / "validation", config=config.validation
        )
        reference = load_drift_reference(
            tracking_uri=locations.tracking_uri, model_name=config.model_name, dst_dir=work_dir / "reference"
        )
        drift = measure_drift(
            frame=dataset.frame,
            sha256=dataset.sha256,
            validation=validation,
            reference=reference,
            config=config.drift,
            out_dir=work_dir / "validation",
        )
        checks = write_data_report(validation=validation, drift=drift, out_dir=work_dir / "validation")
        log_dataset(run=run, dataset=dataset, reports=[work_dir / "validation"])
        log_data_checks(run=run, checks=checks)
        require_valid_dataset(checks=checks)
        splits = split_dataset(frame=dataset.frame, config=config.split)

        trained = train_model(splits=splits, config=config.training, work_dir=work_dir)
        evaluation = evaluate_model(trained=trained, splits=splits, out_dir=work_dir / "evaluation")
        log_training(run=run, splits=splits, trained=trained, evaluation=evaluation)

        fp32_path = export_model(checkpoint_path=trained.checkpoint_path, out_dir=work_dir / "onnx")
        parity_fp32 = check_parity(onnx_path=fp32_path, checkpoint_path=trained.checkpoint_path, pixels=splits.x_test)
        compression = compress_model(fp32_path=fp32_path, splits=splits, config=config.compression)
        parity_served = check_parity(
            onnx_path=compression.chosen.path, checkpoint_path=trained.checkpoint_path, pixels=splits.x_test
        )
        log_compression(run=run, compression=compression, parity_fp32=parity_fp32, parity_served=parity_served)

        version = register_model(
            run=run,
            model_name=config.model_name,
            compression=compression,
            parity_fp32=parity_fp32,
            parity_served=parity_served,
            dataset=dataset,
            splits=splits,
            data_summary=drift.summary_json,
        )
        bento_tag = build_bento(version=version)
        version = record_bento(version=version, bento_tag=bento_tag)

        candidate = score_candidate(onnx_path=compression.chosen.path, pixels=splits.x_test, labels=splits.y_test)
        serving = check_serving(
            bento_tag=bento_tag,
            onnx_path=compression.chosen.path,
            pixels=splits.x_test,
            config=config.gate.serving,
        )
        approval = request_approval(
            version=version,
            candidate=candidate,
            compression=compression,
            parity=parity_fp32,
            serving=serving,
            config=config.gate,
            pixels=splits.x_test,
            labels=splits.y_test,
            work_dir=work_dir,
        )
        decision = promote_if_better(
            run=run,
            version=version,
            candidate=candidate,
            compression=compression,
            parity=parity_fp32,
            serving=serving,
            approval=approval,
            config=config.gate,
            pixels=splits.x_test,
            labels=splits.y_test,
            work_dir=work_dir,
        )
    except Exception as error:
        if version is not None:
            mark_version_errored(version=version, error=str(error))
        close_tracking_run(run=run, succeeded=False, error=str(error))
        raise
    close_tracking_run(run=run, succeeded=True)
    return summarize_run(run=run, version=version, decision=decision)
