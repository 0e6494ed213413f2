"""Model monitoring: each served version's captured traffic of the window checked for drift from its training data,
recorded in MLflow (the monitoring experiment, the version's tags and logged model) and in the Prefect UI, and
`greenlight.drift.detected` sent past a threshold. Deployed as `model_monitoring/monitoring`, hourly
(deployments/prefect.yaml); `greenlight monitor` runs the same tasks. See docs/monitoring.md.
"""

from prefect import flow

from tasks.core.errors import quiet_expected_errors
from tasks.monitoring.drift_record import RecordedCheck, alert_drift, open_monitoring_run, record_live_drift
from tasks.monitoring.drift_watch import MonitorConfig, check_live_drift, watched_versions


# The default MonitorConfig() (every production model, the last 24 h) is what the Prefect UI pre-fills its form with.
@flow(name="model_monitoring", log_prints=True)
def model_monitoring(config: MonitorConfig = MonitorConfig()) -> list[RecordedCheck]:  # noqa: B008
    """Check config.model_name's version (empty: every production version) for drift over the window."""
    quiet_expected_errors()  # an unknown model or version: its message in the logs and the Prefect UI
    recorded = []
    for ref in watched_versions(config=config):
        check = check_live_drift(ref=ref, config=config)
        run = open_monitoring_run(check=check)
        alert = alert_drift(check=check, ref=ref, report_link=run.report_link)
        recorded.append(record_live_drift(check=check, run=run, alert=alert))
        print("\n".join(recorded[-1].lines()))
    if not recorded:
        print("no model has a production version to monitor")
    return recorded
