"""`greenlight monitor`: the drift of a served version's captured traffic from its training data, now
(tasks/monitoring/drift_watch.py; the scheduled flow: flows/monitoring.py; the manual: docs/monitoring.md)."""

import argparse

from pydantic import ValidationError

from tasks.core.errors import GreenlightError
from tasks.core.locations import Locations
from tasks.core.spec import validation_problems


def add_monitor_parser(commands: argparse._SubParsersAction) -> None:
    """The `monitor` command and its flags."""
    monitor = commands.add_parser(
        "monitor",
        help="check served versions' captured traffic for drift from their training data",
        description=(
            "Read the requests and answers the service captured (GREENLIGHT_CAPTURE_RATE) over a window and score"
            " their drift from the version's training data with the data checks' PSI and thresholds. The report goes"
            " to MLflow (experiment monitoring, and the version's monitor.* tags); past a threshold the event"
            " greenlight.drift.detected is sent to Prefect. Exit 0 whatever the drift (a finding, not an error);"
            " exit 1 for an unknown model or version or a window that is not one, with nothing recorded."
        ),
    )
    monitor.add_argument("--model-name", help="registered model name (default: every model with a production version)")
    monitor.add_argument("--version", help="registered version number (default: the production version)")
    monitor.add_argument("--since", default="24h", help="the window: the last 24h (default), 90m, 7d, ...")
    monitor.add_argument("--capture-dir", help="capture folder or s3://bucket/prefix (default: as greenlight serve)")
    monitor.add_argument("--min-rows", type=int, help="fewer captured rows are not scored (default 100)")


def command_monitor(args: argparse.Namespace, locations: Locations) -> int:
    """Check each version asked for, record it, and print what was read, the drift, the report and the event."""
    from tasks.monitoring.drift_record import alert_drift, open_monitoring_run, record_live_drift
    from tasks.monitoring.drift_watch import MonitorConfig, check_live_drift, parse_window, watched_versions

    settings = {
        "model_name": args.model_name,
        "version": args.version,
        "since_hours": parse_window(args.since),
        "capture_location": args.capture_dir,
        "min_rows": args.min_rows,
    }
    try:
        config = MonitorConfig.model_validate({k: v for k, v in settings.items() if v is not None})
    except ValidationError as error:
        raise GreenlightError(f"invalid flags: {validation_problems(error)}") from error
    versions = watched_versions.fn(config)
    if not versions:
        print(f"no model has a production version in {locations.tracking_uri}: nothing to monitor")
    for ref in versions:
        check = check_live_drift.fn(ref, config)
        run = open_monitoring_run.fn(check)
        alert = alert_drift.fn(check, ref, run.report_link)
        print("\n".join(record_live_drift.fn(check, run, alert).lines()), flush=True)
    return 0
