"""Batch scoring: a file answered by a registered version with the service's own checks and contract, the rows it
refuses set aside with their reasons, the run recorded in MLflow. Deployed as `batch_scoring/batch-scoring`
(deployments/prefect.yaml); `greenlight predict` runs the same tasks. See docs/batch-scoring.md.
"""

from prefect import flow

from tasks.core.errors import quiet_expected_errors
from tasks.release.scoring import ScoringConfig, ScoringResult, load_scoring_model, record_scoring, score_file


@flow(name="batch_scoring", log_prints=True)
def batch_scoring(config: ScoringConfig) -> ScoringResult:
    """Score config.data_path with config.version of config.model_name (production when empty) into config.out_path;
    refused rows go to <out_path>.rejected.parquet."""
    quiet_expected_errors()  # a refused model or file: its message in the logs and the Prefect UI, not a traceback
    model = load_scoring_model(config=config)
    result = score_file(model=model, config=config)
    record_scoring(result=result)
    print(result.line())
    return result
