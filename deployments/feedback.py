"""`greenlight feedback`: true labels for captured requests, turned into live accuracy (or RMSE) per day on every
version that answered them (tasks/monitoring/labels.py, tasks/monitoring/live_metrics.py; the manual:
docs/monitoring.md#late-labels)."""

import argparse
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from tasks.core.errors import GreenlightError
from tasks.core.locations import Locations
from tasks.core.spec import validation_problems


def add_feedback_parser(commands: argparse._SubParsersAction) -> None:
    """The `feedback` command and its flags."""
    feedback = commands.add_parser(
        "feedback",
        help="true labels for captured requests: live accuracy (or RMSE) per day on each version",
        description=(
            "Check a labels file whole (request_id, optional row, the label in a column named as the target or"
            " 'label'), keep it beside the captured requests, then join ALL labels kept so far with the answers every"
            " version gave: per version and UTC day, labelled rows and live accuracy (or RMSE). Recorded on each"
            " version (a run of the MLflow experiment 'monitoring', live.* tags); a drop on the latest day with"
            " enough labelled rows sends greenlight.performance.dropped. Exit 0 when the labels were used (a drop"
            " included); exit 1 when the file or the model cannot be used: nothing is kept or recorded."
        ),
    )
    feedback.add_argument("--model-name", required=True, help="registered model name")
    feedback.add_argument("--data", required=True, help="CSV or Parquet file of request_id, optional row, the label")
    feedback.add_argument("--min-labels-per-day", type=int, help="labelled rows a day needs to be judged (30)")
    feedback.add_argument("--max-accuracy-drop", type=float, help="below test accuracy by more than this (0.05)")
    feedback.add_argument("--max-rmse-increase", type=float, help="above test RMSE by more than this share (0.25)")


def feedback_config(args: argparse.Namespace):
    """The flags as a FeedbackConfig; errors name the flag."""
    from tasks.monitoring.live_metrics import FeedbackConfig

    settings = {
        "model_name": args.model_name,
        "data_path": args.data,
        "min_labels_per_day": args.min_labels_per_day,
        "max_accuracy_drop": args.max_accuracy_drop,
        "max_rmse_increase": args.max_rmse_increase,
    }
    try:
        return FeedbackConfig.model_validate({k: v for k, v in settings.items() if v is not None})
    except ValidationError as error:
        raise GreenlightError(f"invalid flags: {validation_problems(error)}") from error


def version_table(live, config) -> list[str]:
    """One version's days: labelled rows, the live metric, its difference from the test metric, and the verdict."""
    test = "?" if live.test_value is None else f"{live.test_value:.4f}"
    lines = [f"{live.ref.uri}  (test {live.metric} {test})", f"  {'day':<11} {'labelled':>8} {live.metric:>9}  vs test"]
    for day in live.days:
        versus = "" if live.test_value is None else f"{day.value - live.test_value:+.4f}"
        few = day.rows < config.min_labels_per_day
        small = f"   fewer than {config.min_labels_per_day}: not judged" if few else ""
        lines.append(f"  {day.day.isoformat():<11} {day.rows:>8,} {day.value:>9.4f}  {versus:>7}{small}")
    if live.judged is None:
        lines.append(f"  not judged: no day with {config.min_labels_per_day} labelled rows yet")
    elif live.test_value is None:
        lines.append(f"  not judged: the version has no test_{live.metric} tag (the gate did not score it)")
    elif live.drop is None:
        lines.append(f"  judged {live.judged.day}: no drop")
    else:
        lines.append(f"  DROP: {live.drop.line()}")
    return lines


def command_feedback(args: argparse.Namespace, locations: Locations) -> int:
    """Check the file, keep it, recompute from every label kept, record each version, send the drops."""
    from tasks.core.capture_store import CaptureStore
    from tasks.monitoring import labels as late
    from tasks.monitoring import live_metrics as live

    config = feedback_config(args)
    data = late.require_file(Path(config.data_path).expanduser())
    store = CaptureStore.open(config.capture_location or locations.capture)
    refs = live.captured_versions(store, locations.tracking_uri, config.model_name)
    target = live.label_target(refs)
    given = late.read_labels(data, target)
    answers = live.captured_answers(store, refs)
    live.check_single_records(given, answers)  # the last refusal: nothing is kept before it
    kept = late.store_labels(store, config.model_name, given, datetime.now(UTC))
    print(f"{given.line()}; kept in {kept}")
    stored = late.stored_labels(store, config.model_name)
    report = live.measure_live(stored.frame, answers, refs, target.task, config)
    print(matching_line(report, stored.files))
    if not report.versions:
        print("no labelled captured rows yet: nothing recorded (the labels are kept for the next run)")
    for version in report.versions:
        print("\n".join(version_table(version, config)))
        link = live.record_live(version, config)
        print(f"  recorded: live.* tags on the version; an MLflow run (experiment monitoring), its plot: {link}")
        if (sent := live.send_drop(version, config)) is not None:
            print(f"  {sent.line()}")
    for problem in stored.unreadable:
        print(f"not read (a damaged labels file): {problem}")
    return 0


def matching_line(report, files: int) -> str:
    """How many labels are kept in all, how many met a captured request, and a few that did not."""
    text = f"labels kept in all: {report.labels:,} (from {files:,} file(s)); matched to captured answers:"
    text += f" {report.matched:,}"
    if report.unmatched:
        examples = ", ".join(report.unmatched_ids)
        text += (
            f"; never captured: {report.unmatched:,} (e.g. {examples}): capture keeps a sample"
            " (GREENLIGHT_CAPTURE_RATE), so labels of requests it did not keep match nothing"
        )
    return text
