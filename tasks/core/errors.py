"""Errors a user can meet, each mapped to an exit code of `greenlight run`, and how they are logged."""

import logging


class GreenlightError(Exception):
    """Base class: a failure with a message meant for the person running the pipeline."""

    exit_code = 1


class DataRejected(GreenlightError):
    """The input data could not be read or failed a critical expectation; nothing was trained."""

    exit_code = 2


class ConfigRejected(GreenlightError):
    """The run configuration is invalid."""

    exit_code = 2


class ExpectedErrorLogs(logging.Filter):
    """Prefect logs a failed task or flow with its traceback, and repeats the error's repr in every "Finished in
    state Failed(...)" line. For a GreenlightError (bad data, bad config, a refused model) the message is the
    whole story: it is logged once, as written, and the lines after it point back to it. Bugs keep tracebacks."""

    def __init__(self) -> None:
        super().__init__("greenlight-expected-errors")
        self.shown: set[int] = set()  # ids of errors whose message was logged already

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, GreenlightError):
            record.exc_info, record.exc_text, record.args = None, None, ()
            name = type(error).__name__
            record.msg = f"{name} (see above)" if id(error) in self.shown else f"{name}: {error}"
            self.shown.add(id(error))
        elif record.getMessage().startswith("Finished in state Failed(") and (name := expected_error_name(record)):
            record.msg, record.args = f"Finished in state Failed: {name} (see above)", ()
        return True


def expected_error_name(record: logging.LogRecord) -> str | None:
    """The GreenlightError class a 'Finished in state Failed(...)' line repeats, if it is one."""
    message = record.getMessage()
    names = {cls.__name__ for cls in all_subclasses(GreenlightError)} | {GreenlightError.__name__}
    return next((name for name in names if f"exception {name}:" in message or f"exception: {name}:" in message), None)


def all_subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *all_subclasses(direct))]


def quiet_expected_errors() -> None:
    """Install ExpectedErrorLogs on Prefect's run loggers (console and the Prefect UI); idempotent."""
    loggers = [logging.getLogger(name) for name in ("prefect.task_runs", "prefect.flow_runs")]
    if any(isinstance(f, ExpectedErrorLogs) for logger in loggers for f in logger.filters):
        return
    shared = ExpectedErrorLogs()  # one for both: the flow's line about an error the task logged points back to it
    for logger in loggers:
        logger.addFilter(shared)


# A registry or database that blinks (a restart, a lock held a moment too long, a dropped connection) is
# ridden out: two more tries after 2 s and 8 s. Anything else, user errors first, fails at once.
TRANSIENT_RETRIES = {"retries": 2, "retry_delay_seconds": [2, 8]}
TRANSIENT_TYPES = ("ConnectionError", "TimeoutError", "TransportError", "TimeoutException", "OperationalError")
TRANSIENT_WORDS = ("database is locked", "temporarily unavailable", "connection refused", "timed out", "max retries")


def is_transient(error: BaseException | None) -> bool:
    """A failure worth retrying: the network or a store, never a GreenlightError (bad data, config, a refusal)."""
    if error is None or isinstance(error, GreenlightError) or not isinstance(error, Exception):
        return False
    if any(cls.__name__ in TRANSIENT_TYPES for cls in type(error).__mro__):
        return True
    return any(word in str(error).lower() for word in TRANSIENT_WORDS) or is_transient(error.__cause__)


def transient_only(task: object, task_run: object, state: object) -> bool:
    """Prefect retry_condition_fn: retry a failed task run only when its exception is transient."""
    return is_transient(getattr(state, "data", None))
