"""`greenlight predict` on a 1,000,000-row table against posting the same rows to the service's /predict.

    python benchmarks/batch_scoring.py                    # 1,000,000 rows, Parquet and CSV, 50,000 rows posted
    python benchmarks/batch_scoring.py --rows 200000 --posted 20000 --formats parquet

One model for both: a penguins-like table graph in the spec's hand-off (benchmarks/serving.py's stand-in:
NaN imputed, LabelEncoder + one-hot, Gemm), registered with its spec in a temporary registry as the pipeline
registers it and made production. The table mixes numbers (nullable ones with ~2 % NaN), string and integer
categories (a few unseen), an id column the model does not read, and 1 row in 10,000 that the contract
refuses (a missing flipper length). `greenlight predict` runs as a user runs it, a subprocess, timed from
start to exit with its peak RSS (RUSAGE_CHILDREN). The service is `greenlight serve`'s bento (API key on,
following production) on its own port; the first --posted rows of the same file are posted as records,
200 per request, one after another on one keep-alive connection (bodies encoded before the clock starts), and
its rate is extrapolated to the whole file. Targets (issue 23): <= 60 s and <= 1.5 GB for 1,000,000 rows on
2 cores, >= 20x the posting rate. Figures: docs/benchmarks.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))  # run as a script from anywhere: tasks and bentos are imported
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/serving.py's model and servers

from serving import Case, build_greenlight_bento, stand_in_table, start_greenlight, stop  # noqa: E402

from tasks.core.spec import DatasetSpec, FeatureSpec, Spec, TargetSpec  # noqa: E402

MODEL = "penguins-batch"
POST_ROWS = 200  # rows per /predict request, as the issue compares
TARGET_SECONDS, TARGET_RSS_GB, TARGET_RATIO = 60.0, 1.5, 20.0
NULL_SHARE, UNSEEN_SHARE, REFUSED_EVERY = 0.02, 0.001, 10_000


def table_spec() -> Spec:
    """Penguins-like: two nullable numbers, one required, string and integer categories, an id column."""
    features = [
        FeatureSpec(name="bill_length_mm", type="numeric", nullable=True, min=32.1, max=59.6),
        FeatureSpec(name="bill_depth_mm", type="numeric", nullable=True, min=13.1, max=21.5),
        FeatureSpec(name="flipper_length_mm", type="numeric", min=172, max=231),
        FeatureSpec(name="body_mass_g", type="numeric", nullable=True, min=2700, max=6300),
        FeatureSpec(name="island", type="categorical", values=["Biscoe", "Dream", "Torgersen"]),
        FeatureSpec(name="sex", type="categorical", nullable=True, values=["female", "male"]),
        FeatureSpec(name="year", type="categorical", values=[2007, 2008, 2009]),
        FeatureSpec(name="penguin_id", type="id"),
    ]
    target = TargetSpec(name="species", task="classification", labels=["Adelie", "Chinstrap", "Gentoo"])
    return Spec(dataset=DatasetSpec(name="penguins", target=target, features=features))


def write_table(rows: int, folder: Path, formats: list[str]) -> dict[str, Path]:
    """The table in each format: numbers with NaN where nullable, categories with a few unseen values, and
    every REFUSED_EVERY-th row missing its required flipper length."""
    rng = np.random.default_rng(0)

    def number(low: float, high: float, nulls: bool) -> np.ndarray:
        values = rng.uniform(low, high, rows).round(1)
        return np.where(rng.random(rows) < NULL_SHARE, np.nan, values) if nulls else values

    flipper = number(172, 231, nulls=False)
    flipper[REFUSED_EVERY // 2 :: REFUSED_EVERY] = np.nan
    frame = pd.DataFrame(
        {
            "penguin_id": np.arange(rows),
            "bill_length_mm": number(32.1, 59.6, True),
            "bill_depth_mm": number(13.1, 21.5, True),
            "flipper_length_mm": flipper,
            "body_mass_g": number(2700, 6300, True),
            "island": np.where(
                rng.random(rows) < UNSEEN_SHARE, "Anvers", rng.choice(["Biscoe", "Dream", "Torgersen"], rows)
            ),
            "sex": rng.choice(np.array(["female", "male", None], dtype=object), rows, p=[0.49, 0.49, 0.02]),
            "year": rng.choice([2007, 2008, 2009, 2010], rows, p=[0.33, 0.33, 0.33, 0.01]),
            "note": "a column the model does not read",
        }
    )
    paths = {}
    for kind in formats:
        paths[kind] = folder / f"table.{kind}"
        frame.to_parquet(paths[kind], index=False) if kind == "parquet" else frame.to_csv(paths[kind], index=False)
    return paths


# Runs the command as its only child, so RUSAGE_CHILDREN's peak is the command's alone (not the bento build's).
MEASURED = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode;"
    " print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)"
)


def run_predict(data: Path, out: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """`greenlight predict` as a subprocess: wall seconds, peak RSS in GB, its output."""
    command = [sys.executable, "-m", "deployments.cli", "predict", "--model-name", MODEL]
    command += ["--data", str(data), "--out", str(out), "--no-progress"]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", MEASURED, *command], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"greenlight predict exited {done.returncode}:\n{done.stdout}\n{done.stderr[-3000:]}")
    peak_gb = int(done.stderr.split()[-1]) / 1024**2  # ru_maxrss is in KiB on Linux
    return seconds, peak_gb, done.stdout


def posted_rows_per_s(url: str, key: str, data: Path, rows: int) -> tuple[float, float]:
    """Post the file's first rows as records, POST_ROWS per request, one after another: rows per second for the
    requests alone (bodies encoded before the clock starts), and with the client's own work (the rows read into
    records, encoded, the answers decoded)."""
    started = time.perf_counter()
    frame = pd.read_parquet(data).head(rows) if data.suffix == ".parquet" else pd.read_csv(data, nrows=rows)
    records = frame.drop(columns=["note"]).astype(object)
    records = records.where(records.notna(), None).to_dict("records")
    bodies = [json.dumps({"records": records[i : i + POST_ROWS]}).encode() for i in range(0, rows, POST_ROWS)]
    client_s = time.perf_counter() - started
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        client.post("/predict", content=bodies[0])  # the connection and the first request's set-up
        started = time.perf_counter()
        answers = [client.post("/predict", content=body) for body in bodies]
        requests_s = time.perf_counter() - started
    started = time.perf_counter()
    decoded = [answer.json() for answer in answers]
    client_s += time.perf_counter() - started
    refused = sum("error" in answer for answer in decoded)
    print(
        f"  posted {rows:,} rows in {len(bodies):,} requests: {requests_s:.2f} s of requests, {client_s:.2f} s of"
        f" reading, encoding and decoding ({refused} requests refused for a bad row)"
    )
    return rows / requests_s, rows / (requests_s + client_s)


def time_predict(kind: str, path: Path, tmp: Path, env: dict[str, str], rows: int) -> tuple[float, float]:
    """Run and print one `greenlight predict`; its rate from start to exit, and the scoring's own rate (reading to
    writing, as the command prints it: the rest is start-up and loading the version)."""
    seconds, peak_gb, output = run_predict(path, tmp / f"scores-{kind}.parquet", env)
    summary = next(line for line in output.splitlines() if line.startswith("scored"))
    scoring = float(
        next(line for line in output.splitlines() if "rows/s from reading" in line).split()[0].replace(",", "")
    )
    print(
        f"greenlight predict ({kind}, {path.stat().st_size / 1e6:.0f} MB): {seconds:.1f} s wall,"
        f" {rows / seconds:,.0f} rows/s (scoring alone {scoring:,.0f} rows/s), peak RSS {peak_gb:.2f} GB;"
        f" {summary.split(' (see')[0]}"
    )
    ok = seconds <= TARGET_SECONDS * rows / 1_000_000 and peak_gb <= TARGET_RSS_GB
    print(f"  target <= {TARGET_SECONDS:.0f} s per 1,000,000 rows, <= {TARGET_RSS_GB} GB: {verdict(ok)}")
    return rows / seconds, scoring


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the scored table")
    parser.add_argument("--posted", type=int, default=50_000, help="rows posted to /predict (then extrapolated)")
    parser.add_argument("--formats", nargs="+", default=["parquet", "csv"], choices=["parquet", "csv"])
    parser.add_argument("--skip-service", action="store_true", help="time greenlight predict only")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="greenlight-batch-bench-") as directory:
        tmp = Path(directory)
        spec = table_spec()
        case = Case(MODEL, stand_in_table(spec.dataset, tmp / "model.onnx"), spec, "penguins-like table", {})
        bento_tag, stores = build_greenlight_bento(case, tmp)
        env = {**os.environ, **stores, "GREENLIGHT_HOME": str(tmp), "PREFECT_HOME": str(tmp / "prefect")}
        env.pop("GREENLIGHT_VERIFY_KEY_FILE", None)
        paths = write_table(args.rows, tmp, args.formats)
        print(f"{args.rows:,} rows, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
        rates = {kind: time_predict(kind, path, tmp, env, args.rows) for kind, path in paths.items()}
        if args.skip_service:
            return 0
        server = start_greenlight(bento_tag, stores, "0-1", tmp)
        try:
            sample = min(args.posted, args.rows)
            posted, posted_whole = posted_rows_per_s(server.url, server.api_key, paths[args.formats[0]], sample)
        finally:
            stop(server)
        print(
            f"POST /predict, {POST_ROWS} rows a request, extrapolated from {sample:,} rows: {posted:,.0f} rows/s"
            f" ({args.rows / posted:,.0f} s for {args.rows:,}); with the client's own work {posted_whole:,.0f} rows/s"
        )
        for kind, (rate, scoring) in rates.items():
            met = verdict(rate / posted >= TARGET_RATIO)
            print(
                f"ratio predict ({kind}) / posting: {rate / posted:.1f}x, {rate / posted_whole:.1f}x with the client's"
                f" work; the scoring alone {scoring / posted:.1f}x (target >= {TARGET_RATIO:.0f}x: {met})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
