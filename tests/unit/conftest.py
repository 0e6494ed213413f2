"""The unit rule, enforced: a unit test trains no model, opens no MLflow store and starts no server.

While a test under tests/unit is set up, runs and is torn down (its module's fixtures included), each of those
fails it, naming where the test belongs instead: tests/model for a model trained, tests/integration for a store or
a server. `make test-unit` stays a one-minute check however the suite grows.
"""

import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

# argv words of a program that serves: Prefect's test harness and ephemeral API (python -m uvicorn), `prefect server
# start`, `mlflow server`, `bentoml serve`, `greenlight serve`, a Prefect worker; torchrun trains in child processes.
SERVER_WORDS = {"uvicorn", "gunicorn", "serve", "server", "worker", "torchrun", "torch.distributed.run"}


class UnitRuleBroken(AssertionError):
    """A test under tests/unit did what only a model or integration test may do."""


# Every refusal raised so far: code under test that catches all exceptions (a candidate "skipped with its reason")
# must not hide one, so each test phase that raised one fails with it, whatever became of the exception.
_refused: list[UnitRuleBroken] = []


def refuse(what: str, folder: str) -> Callable[..., None]:
    """A stand-in for a library call: records and raises the refusal."""

    def refused(*args, **kwargs) -> None:
        _refused.append(UnitRuleBroken(f"a unit test {what}: it belongs in {folder} (see tests/unit/conftest.py)"))
        raise _refused[-1]

    return refused


def guard_processes(patch: pytest.MonkeyPatch) -> None:
    """No socket listens in this process, and no child process serves (short commands such as git still run)."""
    patch.setattr(socket.socket, "listen", refuse("listened on a socket (a server)", "tests/integration"))
    popen_init = subprocess.Popen.__init__

    def checked_init(self, args, *rest, **kwargs) -> None:
        words = [args] if isinstance(args, str | bytes) else list(args)
        if {str(word).rsplit("/", 1)[-1] for word in words} & SERVER_WORDS:
            refuse(f"started a server or trainer process ({' '.join(map(str, words))})", "tests/integration")()
        popen_init(self, args, *rest, **kwargs)

    patch.setattr(subprocess.Popen, "__init__", checked_init)


def guard_mlflow(patch: pytest.MonkeyPatch) -> None:
    """No MLflow store: tracking and registry stores alike come from a StoreRegistry."""
    from mlflow.tracking.registry import StoreRegistry

    patch.setattr(StoreRegistry, "get_store_builder", refuse("opened an MLflow store", "tests/integration"))


def guard_training(patch: pytest.MonkeyPatch) -> Callable[[], None]:
    """No optimizer step (a global hook sees every torch fit loop's) and no boosting round (LightGBM's fit).
    Returns what removes the hook."""
    from lightgbm.basic import Booster
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    patch.setattr(Booster, "update", refuse("grew trees (LightGBM)", "tests/model"))
    return register_optimizer_step_pre_hook(refuse("took an optimizer step (trained a network)", "tests/model")).remove


@contextmanager
def unit_rule() -> Iterator[None]:
    """The guards, installed for one test phase. The guarded libraries are imported here (once: ~1 s with torch
    and pandas loaded), not left to the test: code that imports them inside a call would slip past otherwise."""
    with pytest.MonkeyPatch.context() as patch:
        guard_processes(patch)
        guard_mlflow(patch)
        remove_step_hook = guard_training(patch)
        try:
            yield
        finally:
            remove_step_hook()


def guarded_phase():
    """A hook wrapper's body: the phase runs under the rule and fails with any refusal it raised."""
    seen = len(_refused)
    with unit_rule():
        try:
            result = yield
        except UnitRuleBroken:
            raise
        except Exception as error:
            if len(_refused) > seen:
                raise _refused[-1] from error
            raise
    if len(_refused) > seen:
        raise _refused[-1]
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from guarded_phase())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from guarded_phase())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    return (yield from guarded_phase())
