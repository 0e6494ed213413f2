"""`greenlight predict`: score a CSV or Parquet file with a registered version, as the service would answer each row
(tasks/release/scoring.py; the manual: docs/batch-scoring.md)."""

import argparse

from pydantic import ValidationError

from tasks.core.errors import GreenlightError
from tasks.core.locations import Locations
from tasks.core.spec import validation_problems

REJECTS_RULE = "<out>.rejected.parquet (scores.csv -> scores.csv.rejected.parquet)"


def add_predict_parser(commands: argparse._SubParsersAction) -> None:
    """The `predict` command and its flags."""
    predict = commands.add_parser(
        "predict",
        help="score a CSV or Parquet file with a registered version (batch scoring)",
        description=(
            "Answer every row of a file with a registered version's ONNX file and the service's request contract."
            f" Rows the contract refuses go to {REJECTS_RULE} with their 0-based data row number (the header is"
            " not a row), the reason the service would answer, and their values; the rest are answered. Exit 0"
            " when at least one row was scored; exit 1 when the model or the file cannot be used: no answers file is"
            " written (when every row was refused, only the rejects file)."
        ),
    )
    predict.add_argument("--model-name", required=True, help="registered model name")
    predict.add_argument("--version", help="registered version number (default: the production version)")
    predict.add_argument("--data", required=True, help="CSV or Parquet file to score (extra columns are ignored)")
    predict.add_argument(
        "--out", required=True, help=f"answers file, .csv or .parquet by its extension; refused rows: {REJECTS_RULE}"
    )
    predict.add_argument(
        "--keep", action="append", default=[], metavar="COLUMN", help="copy this column beside the answers (repeat)"
    )
    predict.add_argument("--chunk-rows", type=int, help="rows read, checked and answered at a time (default 50,000)")
    predict.add_argument("--threads", type=int, help="ONNX Runtime threads (default: every core)")
    predict.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")


def command_predict(args: argparse.Namespace, locations: Locations) -> int:
    """Load the version as the service does, score the file, record the run, print the counts."""
    from tasks.release.scoring import ScoringConfig, load_scoring_model, record_scoring, score_file

    settings = {
        "model_name": args.model_name,
        "version": args.version,
        "data_path": args.data,
        "out_path": args.out,
        "keep_columns": args.keep,
        "chunk_rows": args.chunk_rows,
        "threads": args.threads,
    }
    try:
        config = ScoringConfig.model_validate({k: v for k, v in settings.items() if v is not None})
    except ValidationError as error:
        raise GreenlightError(f"invalid flags: {validation_problems(error)}") from error
    model = load_scoring_model.fn(config)
    print(f"scoring {config.data_path} with models:/{model.name}/{model.version}", flush=True)
    result = score_file.fn(model, config, progress=not args.no_progress)
    if result.absent_columns:
        print(f"not in the file, answered as missing in every row: {', '.join(result.absent_columns)}")
    run_id = record_scoring.fn(result)
    print(f"{result.line()}; answers in {result.out_path}")
    print(f"{result.rows_per_s:,.0f} rows/s from reading to writing; MLflow run {run_id} (experiment batch-scoring)")
    return 0
