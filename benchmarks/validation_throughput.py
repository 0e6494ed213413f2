"""How fast the data gate is: the full expectation suite on a synthetic 1,000,000-row digits frame.

Prints rows/s and the fixed cost per validation (the same suite on 1 row), each as the best and the median
of --repeats runs, plus the figures around it in a run (report page, data summary + PSI). Every run goes
through validate_dataset: a GX Checkpoint built from the suite the digits spec generates (tasks.data.suite),
result JSON written.

    PYTHONPATH=. python benchmarks/validation_throughput.py [--rows 1000000] [--repeats 5]
"""

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.core.config import DriftConfig, ValidationConfig
from tasks.core.spec import DIGITS_COLUMNS as FEATURE_COLUMNS
from tasks.core.spec import digits_frame, digits_spec
from tasks.data.drift import DriftReference, measure_drift, summarize
from tasks.data.report import write_data_report
from tasks.data.suite import suite_for_spec
from tasks.data.validation import validate_dataset

TARGET_ROWS_PER_S = 1_000_000
TARGET_FIXED_S = 1.0
TARGET_COLUMN = "target"
SPEC = digits_spec().dataset


def synthetic_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """Rows drawn pixel by pixel from the bundled digits' own value frequencies: valid, realistic, no repeats."""
    rng = np.random.default_rng(seed)
    digits = digits_frame()
    columns = {}
    for name in FEATURE_COLUMNS:
        values, counts = np.unique(digits[name], return_counts=True)
        columns[name] = rng.choice(values, size=rows, p=counts / counts.sum())
    columns[TARGET_COLUMN] = np.arange(rows) % 10
    return pd.DataFrame(columns)


def timed(action: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of each of `repeats` calls."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - start)
    return seconds


def line(label: str, seconds: list[float], extra: str = "") -> str:
    return f"{label:<44} best {min(seconds):7.3f} s   median {statistics.median(seconds):7.3f} s{extra}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="greenlight-bench-"))
    frame, one_row = synthetic_frame(args.rows), synthetic_frame(1, seed=1)
    print(f"suite of the digits spec: {len(suite_for_spec(SPEC)['expectations'])} expectations; frame {frame.shape}")

    def validate(data: pd.DataFrame):
        return validate_dataset.fn(
            frame=data, source="bench.parquet", report_dir=out, config=ValidationConfig(), spec=SPEC
        )

    first = timed(lambda: validate(one_row), 1)  # pays GX's one-off imports and registries
    fixed = timed(lambda: validate(one_row), args.repeats)
    full = timed(lambda: validate(frame), args.repeats)
    report = validate(frame)
    assert report.passed and not report.of_severity("warning"), [f.detail for f in report.failures]
    best, typical = args.rows / min(full), args.rows / statistics.median(full)
    marginal = args.rows / max(min(full) - min(fixed), 1e-9)
    print(line("first validation in a process (1 row)", first))
    print(line("fixed cost per validation (1 row)", fixed, f"   target < {TARGET_FIXED_S:.0f} s"))
    print(line(f"validation of {args.rows:,} rows", full))
    print(f"{'throughput, end to end':<44} best {best:,.0f} rows/s   median {typical:,.0f} rows/s", end="")
    print(f"   target >= {TARGET_ROWS_PER_S:,}")
    print(f"{'throughput, fixed cost excluded':<44} best {marginal:,.0f} rows/s")

    reference = DriftReference("1", summarize(frame, "0" * 64, SPEC), "the same frame")
    drift = timed(lambda: measure_drift.fn(frame, "0" * 64, report, reference, DriftConfig(), out, SPEC), args.repeats)
    print(line(f"data summary + PSI drift, {args.rows:,} rows", drift))
    result = measure_drift.fn(frame, "0" * 64, report, reference, DriftConfig(), out, SPEC)
    page = timed(lambda: write_data_report.fn(validation=report, drift=result, out_dir=out), args.repeats)
    print(line("offline HTML report page", page))
    verdict = "met" if best >= TARGET_ROWS_PER_S and min(fixed) < TARGET_FIXED_S else "NOT met"
    print(f"targets {verdict} (best figures; this machine is shared, so medians wander)")


if __name__ == "__main__":
    main()
