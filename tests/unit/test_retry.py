"""Waiting for a service or process, and trying a step again (tasks/core/retry.py), as the callers use it: what a
user reads when a server exits before it is ready or never gets ready, and how often a step is tried."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bentos.serve import wait_until_ready
from deployments import stack
from deployments.stack import Launcher, Ports, StackError, wait_for_exit
from tasks.core.retry import try_again_while, wait_until


def answers(*values):
    """A `ready` that gives these answers in turn (an exception instance is raised), counting the calls."""
    queue = list(values)

    def ready():
        ready.calls += 1
        value = queue.pop(0)
        if isinstance(value, Exception):
            raise value
        return value

    ready.calls = 0
    return ready


def test_wait_until_returns_the_first_true_answer():
    ready = answers(None, False, "here", "later")
    assert wait_until(ready, timeout_s=5, every_s=0.001) == "here" and ready.calls == 3


def test_wait_until_gives_none_when_the_time_runs_out_after_trying_at_least_once():
    ready = answers(*[False] * 1000)
    began = time.monotonic()
    assert wait_until(ready, timeout_s=0.05, every_s=0.01) is None
    assert time.monotonic() - began >= 0.05 and 2 <= ready.calls < 10
    once = answers(False)
    assert wait_until(once, timeout_s=-1, every_s=0.01) is None and once.calls == 1


def test_wait_until_counts_not_yet_errors_as_not_ready_and_raises_any_other_at_once():
    ready = answers(ConnectionRefusedError(), ConnectionRefusedError(), True)
    assert wait_until(ready, timeout_s=5, every_s=0.001, not_yet=(OSError,)) is True and ready.calls == 3
    exited = answers(ConnectionRefusedError(), RuntimeError("server exited with code 3"), True)
    with pytest.raises(RuntimeError, match="exited with code 3"):
        wait_until(exited, timeout_s=5, every_s=0.001, not_yet=(OSError,))
    assert exited.calls == 2


def test_try_again_while_repeats_up_to_the_attempts_and_says_why_before_each():
    said = []
    step = answers("port taken", "port taken", "served", "unused")
    result = try_again_while(step, again=lambda r: r == "port taken", attempts=3, before_again=said.append)
    assert (result, step.calls, said) == ("served", 3, [2, 3])
    always = answers(*["port taken"] * 5)
    assert try_again_while(always, again=lambda r: r == "port taken", attempts=3) == "port taken"
    assert always.calls == 3  # the last result, not an error: the caller reports it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serving_waits_name_a_server_that_exited_or_never_answered():
    exited = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    exited.wait()
    with pytest.raises(RuntimeError, match=r"bentoml serve exited with code 3 before http://127.0.0.1:\d+ was ready"):
        wait_until_ready(exited, f"http://127.0.0.1:{free_port()}", timeout_s=5)
    silent = subprocess.Popen(["sleep", "30"])
    try:
        url = f"http://127.0.0.1:{free_port()}"  # nothing listens: refused until the time is up
        with pytest.raises(TimeoutError, match=rf"{url}/readyz did not answer 200 within"):
            wait_until_ready(silent, url, timeout_s=0.3)
    finally:
        silent.kill()
        silent.wait()


@pytest.fixture
def launcher(tmp_path: Path):
    started = Launcher(tmp_path, Ports(prefect=1, mlflow=2), dict(os.environ))
    yield started
    for proc in started.started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        started.popens[proc.name].wait()


def test_a_stack_process_that_exits_before_it_is_ready_is_named_with_its_log(launcher):
    command = [sys.executable, "-c", "print('address already in use'); raise SystemExit(4)"]
    proc = launcher.start("prefect-server", command)
    with pytest.raises(StackError) as raised:
        launcher.wait_until(lambda: False, proc, "answer on /health")
    message = str(raised.value)
    assert message.startswith("prefect-server exited with code 4 before answer on /health; last lines of ")
    assert message.endswith("address already in use")  # the tail of its log
    assert wait_for_exit(proc, timeout_s=5)


def test_a_stack_process_that_never_gets_ready_is_given_up_on(launcher, monkeypatch):
    monkeypatch.setattr(stack, "START_TIMEOUT_S", 0.3)
    proc = launcher.start("mlflow", ["sleep", "30"])
    with pytest.raises(StackError, match=r"mlflow gave no answer on /health within 0.3 s; last lines"):
        launcher.wait_until(lambda: False, proc, "answer on /health")
    assert launcher.wait_until(lambda: True, proc, "answer on /health") >= 0.3  # counted from the launch
    assert not wait_for_exit(proc, timeout_s=0.2)  # still running: `down` goes on to SIGKILL
