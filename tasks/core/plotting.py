"""Figures drawn one at a time: matplotlib is not thread-safe."""

import functools
import threading
from collections.abc import Callable
from pathlib import Path

# matplotlib is not thread-safe (one mathtext parser for the process): runs that share a process (Prefect's
# threads, four concurrent runs in the tests) failed now and then with a ParseException on "$10^{-1}$" while
# two figures drew their log-axis labels at once. Each figure is drawn and saved under this lock.
PLOTTING = threading.RLock()


def one_plot_at_a_time(function: Callable[..., Path]) -> Callable[..., Path]:
    """Draw and save the decorated function's figure while no other thread plots (see PLOTTING)."""

    @functools.wraps(function)
    def locked(*args, **kwargs) -> Path:
        with PLOTTING:
            return function(*args, **kwargs)

    return locked
