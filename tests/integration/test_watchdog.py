"""The watchdog that stops a process's servers when it dies (tasks.core.processes.guard_descendants): started from
a worker thread that then ends, it must leave them running while the process lives, and still stop them after a
kill -9 of the process. PR_SET_PDEATHSIG fires when the starting *thread* ends, which used to make the watchdog
stop every child of a live process (a test's Prefect server: the next run's connection refused)."""

import signal
import subprocess
import sys
from pathlib import Path

import psutil

from tasks.core.retry import wait_until

ROOT = Path(__file__).resolve().parents[2]
# The process a test kills: the watchdog started from a thread that has ended, then a server-like child of its own.
SCRIPT = """
import threading, time
from tasks.core.processes import guard_descendants, start_child
thread = threading.Thread(target=guard_descendants)
thread.start()
thread.join()
child = start_child(["sleep", "120"], {"PATH": "/usr/bin:/bin"}, die_with_parent=False)  # only the watchdog stops it
print(child.pid, flush=True)
time.sleep(120)
"""


def running(process: psutil.Process) -> bool:
    """Running and not a zombie (a stopped child the script never waited for)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_watchdog_started_from_an_ended_thread_keeps_the_children_until_the_process_dies() -> None:
    process = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        child = psutil.Process(int(process.stdout.readline()))
        # The thread that started the watchdog has ended: the process's children live on while it does.
        assert not wait_until(lambda: not running(child), 3, every_s=0.5), "the watchdog stopped a live child"
        [watchdog] = [p for p in psutil.Process(process.pid).children() if p.pid != child.pid]
        assert running(watchdog) and "tasks.core.processes" in watchdog.cmdline()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        _, alive = psutil.wait_procs([child, watchdog], timeout=30)
        assert not alive, f"outlived the killed process: {[p.cmdline() for p in alive]}"
    finally:
        process.kill()
        process.wait(timeout=10)
