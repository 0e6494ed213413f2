"""`greenlight watch` and `greenlight submit`: new data becomes a `greenlight.data.arrived` event in Prefect.

The watcher scans the watched folders (deployments/arrivals.py says which files are new and complete) and emits one
event per file; `submit` emits the same event for one file by hand. The deployment training_pipeline/on-new-data
(deployments/prefect.yaml) has a trigger on the event that runs the training flow with the event's `config`: the
folder's spec file settings with the file as the data, as `greenlight run --spec SPEC --data FILE` would run it.
"""

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from deployments.arrivals import (
    INCOMING,
    SPEC_FILE,
    ArrivalTracker,
    EmittedLedger,
    Entry,
    Snapshot,
    content_sha256,
    incoming_entries,
    not_ready,
    take_snapshot,
    watched_folders,
)
from deployments.preflight import check_prefect_api
from tasks.core.config import RunConfig
from tasks.core.errors import ConfigRejected, GreenlightError
from tasks.core.locations import Locations, check_readable_file
from tasks.core.spec import safe_name, spec_file_settings, validation_problems
from tasks.monitoring.events import send_event

EVENT = "greenlight.data.arrived"
DEPLOYMENT = "training_pipeline/on-new-data"
LEDGER_FILE = "arrivals.json"
# A file counts as complete once unchanged this long; copies over a network mount can stall for a second or two.
SETTLE_S = 5.0
POLL_S = 2.0

log = logging.getLogger("greenlight.watch")


def arrival_config(path: Path, spec_path: Path) -> dict:
    """The run's configuration, as `greenlight run --spec SPEC --data PATH` builds it: the spec file's settings, this
    file as the data, and the watched folder's name as the model's unless the spec names one (not the file's name,
    which changes with every file)."""
    settings = spec_file_settings(spec_path) | {"data_path": str(path)}
    settings.setdefault("model_name", safe_name(spec_path.parent.name))
    try:
        config = RunConfig.model_validate(settings)
    except ValidationError as error:
        raise ConfigRejected(f"invalid run configuration ({spec_path}): {validation_problems(error)}") from error
    return config.model_dump(mode="json", exclude_unset=True)  # defaults stay the flow's own


def arrival_event(path: Path, spec_path: Path, sha256: str, size: int, source: str):
    """The event for one complete file: its content names the resource, the payload says what to train on."""
    from prefect.events import Event

    payload = {"path": str(path), "spec_path": str(spec_path), "sha256": sha256, "size": size}
    payload |= {"source": source, "config": arrival_config(path, spec_path)}
    resource = {"prefect.resource.id": f"greenlight.data.{sha256}", "prefect.resource.name": path.name}
    return Event(event=EVENT, resource=resource, payload=payload)


def require_prefect_api() -> str:
    """PREFECT_API_URL, answering; never a temporary server of our own, where no trigger listens."""
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        raise GreenlightError(
            "PREFECT_API_URL is not set: point it at the Prefect server whose deployment listens for new data "
            "(`make up` prints it, e.g. http://127.0.0.1:4200/api)"
        )
    check_prefect_api()
    return api


class Watcher:
    """One scan of the watched folders at a time; each complete new file is emitted once and recorded in the ledger."""

    def __init__(self, roots: list[Path], ledger: EmittedLedger, settle_s: float):
        self.roots, self.ledger, self.tracker = roots, ledger, ArrivalTracker(settle_s)
        self.folders: list[Path] = []
        self.noted: set[tuple[Path, str]] = set()
        # Hashed once per look of the file: a spec being fixed or a server being down retries every scan.
        self.hashes: dict[Path, tuple[Snapshot, str]] = {}

    def note(self, path: Path, message: str, level: int = logging.INFO) -> None:
        """Log a message about a path once (a file waiting for a minute is not 30 lines)."""
        if (path, message) not in self.noted:
            self.noted.add((path, message))
            log.log(level, message)

    def scan(self) -> None:
        """Look at every incoming/ folder once: note what is not data, emit what is new and complete."""
        self.follow_folders()
        entries = [entry for folder in self.folders for entry in incoming_entries(folder)]
        self.hashes = {path: known for path, known in self.hashes.items() if path in {e.path for e in entries}}
        for entry in entries:
            if entry.kind == "ignored":
                self.note(entry.path, f"ignored {entry.path}: {entry.why}")
        for entry, snapshot in self.tracker.complete(entries):
            try:
                self.handle(entry, snapshot)
            except OSError as error:  # vanished or unreadable between the scan and the read
                self.note(entry.path, f"skipped {entry.path}: {error.strerror or error}", logging.WARNING)
            except GreenlightError as error:  # a spec that does not load, a server that does not answer
                self.note(entry.path, f"not emitted {entry.path}: {error}", logging.WARNING)
            except Exception:  # a bug on one odd file must not stop the watching of every other
                log.exception("could not handle %s; the watcher goes on", entry.path)

    def follow_folders(self) -> None:
        """Folders with a spec appear and go while the watcher runs; each gets an incoming/ to drop files into."""
        folders = watched_folders(self.roots)
        for folder in sorted(set(folders) - set(self.folders)):
            try:
                (folder / INCOMING).mkdir(exist_ok=True)
                log.info("watching %s/ (spec %s)", folder / INCOMING, folder / SPEC_FILE)
            except OSError as error:
                log.warning("cannot watch %s: %s", folder / INCOMING, error.strerror or error)
        for folder in sorted(set(self.folders) - set(folders)):
            log.info("no longer watching %s/ (its %s is gone)", folder / INCOMING, SPEC_FILE)
        self.folders = folders

    def handle(self, entry: Entry, snapshot: Snapshot) -> None:
        if why := not_ready(entry.path):
            self.note(entry.path, f"waiting for {entry.path}: it {why}")
            return
        known = self.hashes.get(entry.path)
        if known is None or known[0] != snapshot:
            self.hashes[entry.path] = known = (snapshot, content_sha256(entry.path))
        sha256 = known[1]
        if found := self.ledger.find(sha256, entry.spec_path):
            earlier = f"{found['path']}, emitted {found['emitted_at'][:19]}"
            self.note(entry.path, f"not emitted again: {entry.path} holds the content of {earlier}")
            self.tracker.mark_handled(entry.path, snapshot)
            return
        event = arrival_event(entry.path, entry.spec_path, sha256, snapshot.size, source="watch")
        send_event(event)
        self.ledger.record(sha256, entry.spec_path, entry.path, str(event.id))
        self.tracker.mark_handled(entry.path, snapshot)
        size, event_id = f"{snapshot.size:,}", event.id
        log.info("emitted %s: %s (%s bytes, sha256 %s, event %s)", EVENT, entry.path, size, sha256, event_id)


def watch_roots(folders: list[str], home: Path) -> list[Path]:
    """The folders given, else GREENLIGHT_WATCH (paths separated by ':'), else <home>/watch."""
    named = folders or [part for part in os.environ.get("GREENLIGHT_WATCH", "").split(os.pathsep) if part]
    return [Path(folder).expanduser().resolve() for folder in named] if named else [home / "watch"]


def watch(folders: list[str], home: Path, settle_s: float = SETTLE_S, poll_s: float = POLL_S) -> int:
    """Scan every poll_s seconds until stopped (SIGTERM from `make down`, or Ctrl-C)."""
    handler = logging.StreamHandler(sys.stdout)  # the watcher's own lines; not every HTTP request of Prefect's client
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # Prefect, once imported, gives the root logger a handler of its own
    api = require_prefect_api()
    roots = watch_roots(folders, home)
    if roots == [home / "watch"]:
        roots[0].mkdir(parents=True, exist_ok=True)  # the place to create watched folders in, shown by `make up`
    watcher = Watcher(roots, EmittedLedger(home / LEDGER_FILE), settle_s)
    places = ", ".join(str(root) for root in roots)
    log.info("watching %s for folders holding %s; events go to %s", places, SPEC_FILE, api)
    log.info("complete: renamed from NAME.partial, or unchanged for %.0f s; scanning every %.0f s", settle_s, poll_s)
    while True:
        watcher.scan()
        time.sleep(poll_s)


def spec_of(path: Path) -> Path:
    """The spec of the watched folder a file was dropped in (<folder>/incoming/FILE), or a greenlight.yaml beside it."""
    folder = path.parent.parent if path.parent.name == INCOMING else path.parent
    if not (folder / SPEC_FILE).is_file():
        raise ConfigRejected(f"no {SPEC_FILE} in {folder} for {path}: pass --spec, a reviewed `greenlight init` file")
    return folder / SPEC_FILE


def submit(path: Path, spec: Path | None) -> int:
    """Emit the event for one file by hand (always: the ledger of the watcher is not consulted) and say what went."""
    api = require_prefect_api()
    path = path.expanduser().resolve()
    check_readable_file(path)
    spec_path = (spec or spec_of(path)).expanduser().resolve()
    event = arrival_event(path, spec_path, content_sha256(path), take_snapshot(path).size, source="submit")
    send_event(event)
    payload = event.payload
    print(f"emitted     {EVENT} (event {event.id}) to {api}")
    print(f"file        {path}  ({payload['size']:,} bytes, sha256 {payload['sha256']})")
    print(f"spec        {spec_path}  (model {payload['config']['model_name']})")
    print(f"run         {deployment_note(api)}")
    return 0


def deployment_note(api: str) -> str:
    """Where the run the event starts shows up, or that no deployment of this server listens for it."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            found = client.read_deployment_by_name(DEPLOYMENT)
    except ObjectNotFound:
        return f"none: this server has no {DEPLOYMENT} deployment to trigger (apply deployments/prefect.yaml)"
    ui = api.rstrip("/").removesuffix("/api")
    return f"{DEPLOYMENT} starts a flow run for it: {ui}/deployments/deployment/{found.id}"


def add_arrival_parsers(commands: argparse._SubParsersAction) -> None:
    """The `watch` and `submit` commands."""
    watch_command = commands.add_parser("watch", help="emit an event for each new complete file in watched folders")
    watch_command.add_argument(
        "folders",
        nargs="*",
        help=f"folders holding {SPEC_FILE}, or folders of such (default: $GREENLIGHT_WATCH, else <home>/watch)",
    )
    watch_command.add_argument("--settle-s", type=float, default=SETTLE_S, help="seconds a file must stay unchanged")
    watch_command.add_argument("--poll-s", type=float, default=POLL_S, help="seconds between scans")
    submit_command = commands.add_parser("submit", help="emit the new-data event for one file: a run of it starts")
    submit_command.add_argument("file", help="CSV or Parquet file, or a folder of images (one subfolder per class)")
    submit_command.add_argument("--spec", help=f"spec to train it with (default: the {SPEC_FILE} of its folder)")


def command_watch(args: argparse.Namespace, locations: Locations) -> int:
    return watch(args.folders, locations.home, args.settle_s, args.poll_s)


def command_submit(args: argparse.Namespace, locations: Locations) -> int:
    return submit(Path(args.file), Path(args.spec) if args.spec else None)
