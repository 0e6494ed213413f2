"""Errors a user can meet, each mapped to an exit code of `greenlight run`."""


class GreenlightError(Exception):
    """Base class: a failure with a message meant for the person running the pipeline."""

    exit_code = 1


class DataRejected(GreenlightError):
    """The input data could not be read or failed a critical expectation; nothing was trained."""

    exit_code = 2


class ConfigRejected(GreenlightError):
    """The run configuration is invalid."""

    exit_code = 2
