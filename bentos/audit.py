"""The audit log: one JSON line per request (who, which model and version, status, rows, latency), never a payload.

GREENLIGHT_AUDIT_LOG names the file; it rotates by size like logging's RotatingFileHandler (FILE.1 is the newest old
file, FILE.<backups> the oldest). A line costs a few microseconds on the request path: it is formatted by hand and
queued, and a thread writes the queue every 0.2 s in one write() of whole lines; close() writes what is left.
"""

import json
import logging
import os
import threading
import time
from pathlib import Path

from tasks.core.keys import SettingsRejected

logger = logging.getLogger("greenlight.serving")

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_BACKUPS = 5
# How stale the file may be: `tail -f` sees a request within 0.2 s, and a crash (not a normal stop) loses at most
# that much. A write per request (with its syscall) would cost more than the line's own formatting.
FLUSH_EVERY_S = 0.2
# Written at once past this much queued, so a burst never holds more than this in memory.
FLUSH_BYTES = 64 * 1024
# Strings seen often (model names, key ids, endpoints) are escaped once; bounded, as paths come from clients.
QUOTED_CACHE_SIZE = 4096


class AuditLog:
    """An append-only JSON-lines file, rotated past max_bytes, keeping `backups` old files."""

    def __init__(self, path: Path, max_bytes: int, backups: int, flush_every_s: float) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.lock = threading.Lock()
        self.pending: list[str] = []
        self.pending_bytes = 0
        self.fd: int | None = self.open_fd()
        self.size = os.fstat(self.fd).st_size  # bytes in the file plus those queued for it
        self.quoted: dict[str, str] = {}
        self.this_second = (-1, "")  # (second, its ISO text): one tuple, so a reader never sees half an update
        self.stopped = threading.Event()
        self.flusher = threading.Thread(target=self.flush_often, args=(flush_every_s,), name="audit-log", daemon=True)
        self.flusher.start()

    @classmethod
    def open(
        cls,
        path: Path,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
        flush_every_s: float = FLUSH_EVERY_S,
    ) -> "AuditLog":
        """Append to path (its folder is created); SettingsRejected when it cannot be written."""
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            return cls(Path(path), max_bytes, backups, flush_every_s)
        except OSError as error:
            raise SettingsRejected(f"GREENLIGHT_AUDIT_LOG={path} cannot be written: {error.strerror}") from error

    def open_fd(self) -> int:
        # O_APPEND: each write() lands at the end, whole, even if another process appends to the same file.
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)

    def write(
        self,
        key_id: str | None,
        model: str,
        version: str | None,
        status: int,
        rows: int,
        latency_s: float,
        endpoint: str,
    ) -> None:
        """Queue one line; it reaches the file within FLUSH_EVERY_S, or at close()."""
        now = time.time()
        line = (
            f'{{"time":"{self.time_of(now)}","key":{self.quote(key_id)},"model":{self.quote(model)},'
            f'"version":{self.quote(version)},"status":{int(status)},"rows":{int(rows)},'
            f'"latency_ms":{latency_s * 1000.0:.3f},"endpoint":{self.quote(endpoint)}}}\n'
        )
        size = len(line)  # ASCII: json escapes every other character
        with self.lock:
            if self.fd is None:
                return  # closed: the server is stopping and has written its last line
            if self.size + size > self.max_bytes and self.size > 0:
                self.rotate()
            self.pending.append(line)
            self.pending_bytes += size
            self.size += size
            if self.pending_bytes >= FLUSH_BYTES:
                self.flush_pending()

    def time_of(self, now: float) -> str:
        """ISO 8601 UTC with milliseconds; the part up to the second is formatted once a second."""
        second = int(now)
        known, stamp = self.this_second
        if second != known:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self.this_second = (second, stamp)
        return f"{stamp}.{int((now - second) * 1000):03d}Z"

    def quote(self, value: str | None) -> str:
        if value is None:
            return "null"
        quoted = self.quoted.get(value)
        if quoted is None:
            quoted = json.dumps(value)
            if len(self.quoted) < QUOTED_CACHE_SIZE:
                self.quoted[value] = quoted
        return quoted

    def flush_pending(self) -> None:
        """Write the queue in one write() of whole lines (the lock is held)."""
        if self.pending and self.fd is not None:
            data = "".join(self.pending).encode()
            self.pending.clear()
            self.pending_bytes = 0
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self.fd, view) :]
            except OSError as error:  # a full disk must not fail requests: say what was lost
                logger.error("audit log %s: %d bytes of lines not written: %s", self.path, len(view), error.strerror)

    def rotate(self) -> None:
        """FILE -> FILE.1 -> ... -> FILE.<backups>, the oldest dropped; a fresh FILE (the lock is held)."""
        self.flush_pending()
        os.close(self.fd)
        if self.backups > 0:
            for index in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
            if self.path.exists():  # someone may have moved it away already
                os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)  # no old files kept: start the file again
        self.fd = self.open_fd()
        self.size = 0

    def flush_often(self, every_s: float) -> None:
        while not self.stopped.wait(every_s):
            with self.lock:
                self.flush_pending()

    def flush(self) -> None:
        """Write the queued lines now."""
        with self.lock:
            self.flush_pending()

    def close(self) -> None:
        """Write what is queued and close the file; later lines are dropped. Safe to call twice."""
        self.stopped.set()
        if self.flusher is not threading.current_thread():
            self.flusher.join()
        with self.lock:
            self.flush_pending()
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
