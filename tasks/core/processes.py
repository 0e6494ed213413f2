"""Child processes that never outlive what started them: servers for the serving check and `greenlight serve`.

A child gets its own process group (so a stop reaches its workers too) and, on Linux, PR_SET_PDEATHSIG: when
the process that started it dies in any way, kill -9 included, the kernel sends it SIGTERM and it shuts
its workers down as on a normal stop. SIGTERM, SIGINT and SIGHUP sent to the parent are passed on.
Also who owns a run (host, pid, start time), so a later process can tell that a run's process died.
"""

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import IO

PR_SET_PDEATHSIG = 1
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _die_with(parent: int):
    """preexec_fn for a child of `parent`: SIGTERM when the parent dies, and no start if it already has."""

    def arm() -> None:
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl: nobody would stop this child
            os._exit(1)

    return arm


def start_child(
    command: Sequence[str],
    env: Mapping[str, str],
    stdout: IO[bytes] | int | None = None,
    stderr: IO[bytes] | int | None = None,
    cwd: str | None = None,
    die_with_parent: bool = True,
) -> subprocess.Popen[bytes]:
    """Start command in its own process group, to die with this process; stderr joins stdout unless given.

    PR_SET_PDEATHSIG fires when the *thread* that started the child ends, not only the process: a child started
    from a worker thread that must outlive it passes die_with_parent=False and watches for itself."""
    if stderr is None and stdout is not None:
        stderr = subprocess.STDOUT
    return subprocess.Popen(
        list(command),
        env=dict(env),
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_die_with(os.getpid()) if die_with_parent else None,  # noqa: PLW1509  prctl and getppid only
    )


def stop_child(child: subprocess.Popen, grace_s: float = 15) -> None:
    """SIGTERM the child's whole process group, SIGKILL it if it lingers (a no-op for a group that is gone)."""
    if child.poll() is None:
        _signal_group(child, signal.SIGTERM)
        try:
            child.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            pass
    _signal_group(child, signal.SIGKILL)  # workers left behind by a leader that already exited
    child.wait(timeout=5)


def _signal_group(child: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(child.pid, sig)
    except ProcessLookupError:
        pass


@contextmanager
def forwarding_signals(child: subprocess.Popen) -> Iterator[None]:
    """While inside, SIGTERM, SIGINT and SIGHUP to this process stop the child's group (then it exits)."""
    previous = {sig: signal.getsignal(sig) for sig in FORWARDED}

    def forward(signum, frame) -> None:
        _signal_group(child, signal.SIGTERM)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_watchdogs: dict[int, subprocess.Popen[bytes]] = {}


def guard_descendants() -> subprocess.Popen[bytes]:
    """Start a watchdog that stops every process this one started (Prefect's temporary server, a bento build,
    a candidate server) when this process dies without stopping them, a kill -9 included. One per process.

    The watchdog notices the death itself (its parent changes) rather than through PR_SET_PDEATHSIG, which would
    also fire when the thread that started it ends and have it stop the process's servers while it lives on."""
    watchdog = _watchdogs.get(os.getpid())
    if watchdog is None or watchdog.poll() is not None:
        command = [sys.executable, "-m", "tasks.core.processes", str(os.getpid())]
        watchdog = start_child(command, os.environ, stdout=subprocess.DEVNULL, die_with_parent=False)
        _watchdogs[os.getpid()] = watchdog
    return watchdog


def watch_descendants(parent: int, every_s: float = 0.5) -> None:
    """The watchdog's loop: remember the parent's descendants; when the parent is gone (this process was handed to
    another parent) or SIGTERM arrives, stop the ones still running."""
    import psutil

    known: dict[int, psutil.Process] = {}

    def reap(*_: object) -> None:
        alive = [p for p in known.values() if p.is_running()]  # is_running also rules out a reused pid
        for process in alive:
            try:
                process.terminate()
            except psutil.NoSuchProcess:
                pass
        _, lingering = psutil.wait_procs(alive, timeout=10)
        for process in lingering:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole group: the parent decides
    while True:
        if os.getppid() != parent:
            reap()
        try:
            children = psutil.Process(parent).children(recursive=True)
        except psutil.NoSuchProcess:
            reap()
        known = {p.pid: p for p in [*known.values(), *children] if p.pid != os.getpid() and p.is_running()}
        time.sleep(every_s)


# --- owners: which process runs a pipeline run or a sweep trial (tasks.registry.recovery, tasks.model.sweep) ---


@dataclass(frozen=True)
class Owner:
    """The process that runs a pipeline run: pid reuse is told apart by the start time."""

    host: str
    pid: int
    started: float

    def text(self) -> str:
        return f"pid {self.pid} on {self.host}"


def current_owner() -> str:
    """This process as an owner tag value."""
    import psutil

    me = psutil.Process(os.getpid())
    return json.dumps(asdict(Owner(socket.gethostname(), me.pid, round(me.create_time(), 2))))


def read_owner(raw: str | None) -> Owner | None:
    try:
        return Owner(**json.loads(raw)) if raw else None
    except (TypeError, ValueError):
        return None


def is_alive(owner: Owner | None) -> bool:
    """The owner process runs on this host now (same pid, same start time)."""
    import psutil

    if owner is None or owner.host != socket.gethostname():
        return False
    try:
        return round(psutil.Process(owner.pid).create_time(), 2) == owner.started
    except psutil.NoSuchProcess:
        return False


def is_dead(owner: Owner | None) -> bool:
    """The owner is known to be gone: on this host, and no process with its pid and start time."""
    return owner is not None and owner.host == socket.gethostname() and not is_alive(owner)


if __name__ == "__main__":
    watch_descendants(int(sys.argv[1]))
