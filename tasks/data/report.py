"""The data check report: validation and drift together, as one offline HTML page, a message and a verdict.

GX's Data Docs pages load Bootstrap, jQuery, Font Awesome and Vega from CDNs and show pass/fail as icon
fonts, so offline they lose both styling and verdicts. This page is a single file with inline CSS and no
script or external reference: it reads the same from an MLflow artifact, a laptop or an air-gapped host.
Its template is data_report.html beside this module (Jinja2, autoescaped: names and values come from a user's file).
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import jinja2
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.config import DriftConfig
from tasks.core.errors import DataRejected
from tasks.core.records import Link, Note, Record, RunLinks
from tasks.data.drift import DriftReport, FeatureDrift, metric_name
from tasks.data.validation import SEVERITIES, ExpectationFailure, ValidationReport, report_name, show_value

ROWS_NOTE = "Rows are counted from 0 after the header (CSV line = row + 2)."
# The console message lists this many problems per severity; the page lists them all.
SHOWN_FAILURES = 20


@dataclass(frozen=True)
class DataVerdict:
    """The data checks' outcome in figures, for the gate report on the version (the page stays on the run)."""

    source: str
    status: str  # "passed", "passed with warnings" or "rejected"
    expectations: int
    critical_failures: int
    warning_failures: int
    drift_status: str  # "skipped", "ok", "warning" or "blocking"
    drift_note: str
    reference_version: str | None
    max_feature_psi: float | None
    label_psi: float | None
    feature_block_psi: float
    label_block_psi: float

    def markdown(self) -> str:
        drift = f"drift {self.drift_status} against production v{self.reference_version} ({self.drift_note})"
        if self.reference_version is None or self.drift_status == "skipped":
            drift = f"drift {self.drift_note}"
        return (
            f"Data: {self.status}: {self.expectations} expectations on {self.source}, {self.critical_failures}"
            f" critical and {self.warning_failures} warning failures; {drift}."
        )


@dataclass(frozen=True)
class DataCheckReport:
    """Everything the data checks found about one file, and where the page with all of it is."""

    validation: ValidationReport
    drift: DriftReport
    html: Path

    @property
    def source(self) -> str:
        return self.validation.source

    @property
    def blocked(self) -> bool:
        """A critical expectation failed or the drift crossed a blocking threshold."""
        return not self.validation.passed or self.drift.status == "blocking"

    @property
    def status(self) -> str:
        if self.blocked:
            return "rejected"
        warned = self.validation.of_severity("warning") or self.drift.status == "warning"
        return "passed with warnings" if warned else "passed"

    def message(self) -> str:
        """What the person running the pipeline reads: what is wrong, where, and where the full report is."""
        critical = self.validation.of_severity("critical")
        if critical:
            failed = self.validation.failed_expectations("critical")
            head = f"data file {self.source} failed {_count(failed, 'critical expectation')}"
        elif self.drift.status == "blocking":
            head = f"data file {self.source} drifted too far from the production model's training data"
        else:
            head = f"data file {self.source} {self.status} ({self.validation.evaluated_expectations} expectations)"
        lines = [head + (" (nothing was trained):" if self.blocked else ":")]
        lines += _failure_lines(critical)
        lines += self.drift_lines()
        warnings = self.validation.of_severity("warning")
        if warnings:
            lines.append("warnings (reported; they never stop a run):")
            lines += _failure_lines(warnings)
        if critical:
            lines.append(ROWS_NOTE)
        lines.append(f"full report: {self.html}")
        if self.blocked:
            lines.append(self.advice())
        return "\n".join(lines)

    def drift_lines(self) -> list[str]:
        drift = self.drift
        if drift.status == "skipped":
            return [f"  drift: {drift.note}"]
        config = drift.config
        return [
            f"  drift {drift.status} {drift.note}: target PSI {drift.label_psi:.3g} (warn {config.label_warn_psi},"
            f" block {config.label_block_psi}); most drifted features: {drift.top_text()} (warn"
            f" {config.feature_warn_psi}, block {config.feature_block_psi})"
        ]

    def advice(self) -> str:
        if not self.validation.passed:
            return (
                "Fix these values or columns in the file and run again; if the file is right and the spec is not,"
                " edit the spec (types, nullable, labels) and run with --spec."
            )
        return (
            "If the change is real and wanted, retrain on it knowingly: raise drift.feature_block_psi /"
            " drift.label_block_psi in a --config file, or set drift.enabled: false for this run."
        )

    def metrics(self) -> dict[str, float]:
        """Counts and PSI scores for the MLflow run; per-column PSI under drift_psi.<column>."""
        found = {f"validation_{s}_failures": float(self.validation.failed_expectations(s)) for s in SEVERITIES}
        found["validation_expectations"] = float(self.validation.evaluated_expectations)
        if self.drift.status != "skipped":
            found |= {"drift_max_feature_psi": self.drift.max_feature_psi, "drift_label_psi": self.drift.label_psi}
            found |= {f"drift_psi.{metric_name(f.name)}": f.psi for f in self.drift.features}
        return found

    def verdict(self) -> DataVerdict:
        drift = self.drift
        return DataVerdict(
            source=self.source,
            status=self.status,
            expectations=self.validation.evaluated_expectations,
            critical_failures=self.validation.failed_expectations("critical"),
            warning_failures=self.validation.failed_expectations("warning"),
            drift_status=drift.status,
            drift_note=drift.note,
            reference_version=drift.reference_version,
            max_feature_psi=drift.max_feature_psi if drift.status != "skipped" else None,
            label_psi=drift.label_psi if drift.status != "skipped" else None,
            feature_block_psi=drift.config.feature_block_psi,
            label_block_psi=drift.config.label_block_psi,
        )

    def tags(self) -> dict[str, str]:
        return {
            "data_check": self.status,
            "drift_status": self.drift.status,
            "drift_reference_version": self.drift.reference_version or "none",
        }

    def markdown(self, report_link: str) -> str:
        """The Prefect artifact: the verdict, each problem, the drift, and a link to the full page."""
        lines = [f"## Data check: {self.status}", "", f"`{self.source}`, {self.validation.rows} rows", ""]
        if self.validation.failures:
            lines += ["| severity | problem | expectation |", "|---|---|---|"]
            lines += [f"| {f.severity} | {_md(f.detail)} | `{f.expectation}` |" for f in self.validation.failures]
            lines.append("")
        lines += [f"**Drift: {self.drift.status}**, {_md(self.drift.note)}", ""]
        if self.drift.features:
            lines += ["| feature | PSI | unseen |", "|---|---|---|"]
            lines += [
                f"| {_md(f.name)} | {f.psi:.3g} | {_unseen(f.unseen_share)} |"
                for f in self.drift.features[: self.drift.config.top_features]
            ]
            lines += ["", f"Target PSI: {self.drift.label_psi:.3g}", ""]
        lines += [f"Full report: [{self.html.name}]({report_link})", "", f"Local copy: `{self.html}`"]
        return "\n".join(lines)

    def record(self, links: RunLinks) -> Record:
        """Validation and drift figures on the run, the report folder, the suite and the GX result (artifacts
        validation/), and Prefect artifacts: a link to the page and the verdict with each problem."""
        paths = [self.html.parent, self.validation.suite, self.validation.result_json]
        # Report files of a cached validation live in the earlier run's folder: logged by name, once.
        folders = [p for p in paths if p.is_dir()]
        files = [p for p in paths if p.is_file() and not any(folder in p.parents for folder in folders)]
        page = f"validation/{self.html.parent.name}/{self.html.name}"
        return Record(
            metrics=self.metrics(),
            tags=self.tags(),
            files={"validation": (*folders, *files)},
            links=(Link("data-report", page, self.html.name, "Data check report"),),
            notes=(Note("data-check", self.markdown(links.link(page)), "Validation and drift"),),
        )


def _failure_lines(failures: tuple[ExpectationFailure, ...]) -> list[str]:
    lines = [f"  - {failure.detail}  [{failure.expectation}]" for failure in failures[:SHOWN_FAILURES]]
    if len(failures) > SHOWN_FAILURES:
        lines.append(f"  ... and {len(failures) - SHOWN_FAILURES} more, listed in the full report")
    return lines


def _unseen(share: float | None) -> str:
    """A categorical column's share of values the reference never saw; blank for other types."""
    return "" if share is None else f"{share:.1%}"


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _md(text: str) -> str:
    """Table-cell safe: a '|' would split the cell."""
    return text.replace("|", "\\|").replace("\n", " ")


@task(name="write_data_report", cache_policy=NO_CACHE)
def write_data_report(validation: ValidationReport, drift: DriftReport, out_dir: Path) -> DataCheckReport:
    """Write the offline HTML page of the validation and drift results under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = DataCheckReport(validation, drift, out_dir / f"{report_name(validation.source)}.report.html")
    report.html.write_text(render_html(report), encoding="utf-8")
    return report


@task(name="require_valid_dataset", cache_policy=NO_CACHE)
def require_valid_dataset(checks: DataCheckReport) -> DataVerdict:
    """Print the verdict; raise DataRejected (exit code 2) on a critical failure or blocking drift.

    Returns the verdict in figures: the gate report on the version repeats it."""
    if checks.blocked:
        raise DataRejected(checks.message())
    print(checks.message())
    return checks.verdict()


def render_html(report: DataCheckReport) -> str:
    """The whole page: verdict, problems, drift and every expectation run, with inline CSS only."""
    validation, drift = report.validation, report.drift
    return page_template().render(
        file_name=Path(report.source).name,
        status=report.status,
        status_class=report.status.split()[0],
        validation=validation,
        checked_at=f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
        rows_note=ROWS_NOTE,
        problems=[_problem_row(f) for f in validation.failures],
        drift=drift,
        label_shares=[(label, f"{here:.2%}", f"{there:.2%}") for label, (here, there) in drift.label_shares.items()],
        features=[_feature_row(f, drift.config) for f in drift.features],
        outcomes=[
            (("passed" if o.success else o.severity), o.severity, o.expectation, o.target, o.observed, o.why)
            for o in validation.outcomes
        ],
    )


@cache
def page_template() -> jinja2.Template:
    """The page's template (data_report.html beside this module), read once, on the first report written."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent),
        autoescape=True,  # column names, category values and file names come from a user's file
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,  # a value the page names but render_html does not pass fails loudly
    )
    return environment.get_template("data_report.html")


def _problem_row(failure: ExpectationFailure) -> tuple[str, ...]:
    examples = ", ".join(f"{row}: {show_value(value)}" for row, value in failure.examples[:10])
    return failure.severity, failure.column or "(table)", failure.detail, examples, failure.expectation


def _feature_row(feature: FeatureDrift, config: DriftConfig) -> tuple[str, ...]:
    level = _level(feature.psi, config.feature_warn_psi, config.feature_block_psi)
    return feature.name, f"{feature.psi:.4g}", _unseen(feature.unseen_share), level


def _level(value: float, warn: float, block: float) -> str:
    return "blocking" if value >= block else "warning" if value >= warn else "ok"
