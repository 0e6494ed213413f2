"""Waiting and trying again, one way for the whole project (tenacity underneath).

`wait_until` polls until something is ready (a service answering, a process gone); `try_again_while` repeats a
step while its result says another try may do better (a port taken between choosing and binding it). Prefect
tasks retry through Prefect instead (TRANSIENT_RETRIES in tasks/core/errors.py).
"""

from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
)

T = TypeVar("T")


def wait_until(
    ready: Callable[[], T], timeout_s: float, every_s: float, not_yet: tuple[type[Exception], ...] = ()
) -> T | None:
    """Call `ready` every `every_s` seconds until it returns something true, and return that; None once
    `timeout_s` has passed (it is called at least once).

    An exception of a `not_yet` type counts as not ready (a refused connection while a server starts); any
    other ends the wait at once, raised to the caller (the server exited)."""
    retrying = Retrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(every_s),
        retry=retry_if_result(lambda answer: not answer) | retry_if_exception_type(not_yet),
        retry_error_callback=lambda _: None,
    )
    return retrying(ready)


def try_again_while(
    attempt: Callable[[], T],
    again: Callable[[T], bool],
    attempts: int,
    before_again: Callable[[int], None] = lambda number: None,
) -> T:
    """Call `attempt` up to `attempts` times while `again(result)` holds, at once; the last result.

    `before_again(number)` runs before each further attempt (number 2, 3, ...): say why it is tried again.
    An exception from `attempt` is raised at once: only a result can ask for another try."""
    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        retry=retry_if_result(again),
        before_sleep=lambda state: before_again(state.attempt_number + 1),
        retry_error_callback=lambda state: state.outcome.result(),
    )
    return retrying(attempt)
