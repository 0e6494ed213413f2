"""Seconds per pipeline stage, for the run summary and the MLflow run: where a run's time goes.

The flow starts a clock; each stage function it calls is wrapped in @timed_stage; the summary reads them.
A ContextVar keeps concurrent runs in one process (tests, several runs in threads) apart.
"""

import functools
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
STARTED_AT = "_started_at"  # wall clock when the flow's body began (the caller subtracts its own start)

_clock: ContextVar[dict[str, float] | None] = ContextVar("greenlight_stage_seconds", default=None)


def start_clock() -> None:
    """Begin timing this flow run's stages."""
    _clock.set({STARTED_AT: time.time()})


def timed_stage(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Add the wrapped function's wall time to stage `name` of the running clock (none running: no-op)."""

    def wrap(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                if (clock := _clock.get()) is not None:
                    clock[name] = clock.get(name, 0.0) + time.perf_counter() - started

        return timed

    return wrap


def stage_seconds() -> dict[str, float]:
    """The stages timed so far, plus 'set-up and records' (the flow's time outside them) and the start."""
    clock = dict(_clock.get() or {})
    started = clock.pop(STARTED_AT, None)
    if started is None:
        return {}
    clock["set-up and records"] = max(0.0, time.time() - started - sum(clock.values()))
    return {**clock, STARTED_AT: started}
