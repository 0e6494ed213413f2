"""Which files in the watched folders are new and complete: the part of `greenlight watch` that needs no server.

A candidate in a watched folder's incoming/ is complete when renamed from `<name>.partial`, or when it stayed the
same for `settle_s` seconds and no process holds it open for writing; a ledger remembers what was emitted by content.
"""

import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from tasks.core.errors import GreenlightError
from tasks.core.locations import SUPPORTED_SUFFIXES

SPEC_FILE = "greenlight.yaml"
INCOMING = "incoming"
PARTIAL_SUFFIX = ".partial"


def watched_folders(roots: Iterable[Path]) -> list[Path]:
    """Each root that holds greenlight.yaml, and each folder directly below a root that does."""
    found = []
    for root in roots:
        try:
            below = sorted(path for path in root.iterdir() if path.is_dir())
        except OSError:  # not there (yet), or not a folder
            below = []
        found += [folder for folder in (root, *below) if (folder / SPEC_FILE).is_file()]
    return found


@dataclass(frozen=True)
class Entry:
    """One name in an incoming/ folder and what it is: data, a file still being written, or something to ignore."""

    path: Path
    spec_path: Path
    kind: Literal["table", "images", "partial", "hidden", "ignored"]
    why: str = ""  # why an ignored entry is not data


def classify(path: Path, spec_path: Path) -> Entry:
    """What an incoming entry is, from its name and type alone; never opens it (a named pipe would block)."""
    if path.name.startswith("."):  # editors' and rsync's temporary files, renamed when complete
        return Entry(path, spec_path, "hidden")
    if path.name.endswith(PARTIAL_SUFFIX):
        return Entry(path, spec_path, "partial")
    try:
        mode = path.stat().st_mode  # follows a symlink to its file; a loop or a dangling link raises
    except OSError as error:
        return Entry(path, spec_path, "ignored", f"cannot be read ({error.strerror or error})")
    if stat.S_ISDIR(mode):
        return Entry(path, spec_path, "images")
    if not stat.S_ISREG(mode):
        return Entry(path, spec_path, "ignored", "not a regular file or folder")
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        kinds = ", ".join(SUPPORTED_SUFFIXES)
        return Entry(path, spec_path, "ignored", f"not a table ({kinds}) nor a folder of images")
    return Entry(path, spec_path, "table")


def incoming_entries(folder: Path) -> list[Entry]:
    """Every entry of <folder>/incoming/, classified; empty if that folder cannot be listed."""
    incoming, spec_path = folder / INCOMING, folder / SPEC_FILE
    try:
        names = sorted(os.listdir(incoming))
    except OSError:
        return []
    return [classify(incoming / name, spec_path) for name in names]


@dataclass(frozen=True)
class Snapshot:
    """What a candidate looks like on disk now; a folder's is its files' total size, newest change and count."""

    size: int
    mtime_ns: int
    files: int = 1


def take_snapshot(path: Path) -> Snapshot:
    """The candidate's snapshot; raises OSError if it vanished. Links inside a folder are not followed (no loops)."""
    if not path.is_dir():
        status = path.stat()
        return Snapshot(status.st_size, status.st_mtime_ns)
    size, newest, files = 0, path.stat().st_mtime_ns, 0
    for folder, _, names in os.walk(path):
        newest = max(newest, os.stat(folder).st_mtime_ns)
        for name in names:
            status = os.stat(os.path.join(folder, name), follow_symlinks=False)
            size, newest, files = size + status.st_size, max(newest, status.st_mtime_ns), files + 1
    return Snapshot(size, newest, files)


def held_for_writing(fd: int) -> bool:
    """Whether some process has the file open for writing: Linux refuses a read lease while one does. Where leases
    are not available (another user's file, some filesystems), this cannot tell, and stability alone decides."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as error:
        return error.errno == errno.EAGAIN
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return False


def image_files(folder: Path) -> list[Path]:
    """The image files in the class subfolders of an image folder, sorted (the order its fingerprint reads them in)."""
    # tasks.data brings pandas and Prefect: imported by the watcher when it needs them, not by every `greenlight`.
    from tasks.data.image_folders import is_image_file

    return sorted(path for path in folder.glob("*/*") if is_image_file(path) and path.is_file())


def not_ready(path: Path) -> str | None:
    """Why a settled candidate cannot be read as a whole yet, or None when it can."""
    if path.is_dir():
        return None if image_files(path) else "holds no PNG or JPEG files in class subfolders (yet)"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        return f"cannot be opened ({error.strerror or error})"
    try:
        return "is still open for writing by a process" if held_for_writing(fd) else None
    finally:
        os.close(fd)


def content_sha256(path: Path) -> str:
    """A file's sha256, or a folder of images' (every image's path within it and bytes, in order)."""
    from tasks.data.files import file_sha256
    from tasks.data.image_folders import folder_sha256

    if not path.is_dir():
        return file_sha256(path)
    return folder_sha256(path, [image.resolve() for image in image_files(path.resolve())])


class ArrivalTracker:
    """Remembers how each candidate looked at earlier scans, to tell a complete file from one still being written."""

    def __init__(self, settle_s: float, clock: Callable[[], float] = time.monotonic):
        self.settle_s, self.clock = settle_s, clock
        self.unchanged_since: dict[Path, tuple[Snapshot, float]] = {}
        self.partials: set[Path] = set()  # final names of the .partial entries at the last scan
        self.handled: dict[Path, Snapshot] = {}

    def complete(self, entries: list[Entry]) -> list[tuple[Entry, Snapshot]]:
        """The candidates among one scan's entries that are complete now and not handled as they are."""
        now, ready, present = self.clock(), [], set()
        partials = {e.path.with_name(e.path.name.removesuffix(PARTIAL_SUFFIX)) for e in entries if e.kind == "partial"}
        for entry in (e for e in entries if e.kind in ("table", "images")):
            try:
                snapshot = take_snapshot(entry.path)
            except OSError:  # gone between the listing and now: it is not there
                continue
            present.add(entry.path)
            if self.handled.get(entry.path) == snapshot:
                continue
            renamed = entry.path in self.partials and entry.path not in partials
            before, since = self.unchanged_since.get(entry.path, (None, now))
            if before != snapshot:
                self.unchanged_since[entry.path], since = (snapshot, now), now
            if renamed or now - since >= self.settle_s:
                ready.append((entry, snapshot))
        self.partials = partials
        self.unchanged_since = {path: seen for path, seen in self.unchanged_since.items() if path in present}
        self.handled = {path: seen for path, seen in self.handled.items() if path in present}
        return ready

    def mark_handled(self, path: Path, snapshot: Snapshot) -> None:
        """Emitted, or found in the ledger: not looked at again until it changes."""
        self.handled[path] = snapshot


class EmittedLedger:
    """What was emitted, by content and spec, in a JSON file under the Greenlight home: it outlives the watcher."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.entries: dict[str, dict] = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError) as error:
            raise GreenlightError(
                f"the watcher's record of emitted files, {path}, could not be read ({error}); remove it to emit "
                "every complete file in the watched folders again"
            ) from error

    @staticmethod
    def key(sha256: str, spec_path: Path) -> str:
        # The same bytes for another spec (another watched folder) are another run.
        return f"{sha256} {spec_path}"

    def find(self, sha256: str, spec_path: Path) -> dict | None:
        return self.entries.get(self.key(sha256, spec_path))

    def record(self, sha256: str, spec_path: Path, path: Path, event_id: str) -> None:
        """Add an emission and write the ledger now: a new file renamed over the old, so it is never half-written."""
        emitted = {"path": str(path), "event_id": event_id, "emitted_at": datetime.now(UTC).isoformat()}
        self.entries[self.key(sha256, spec_path)] = emitted
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        partial.write_text(json.dumps(self.entries, indent=1))
        partial.replace(self.path)
