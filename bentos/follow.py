"""Follow a registry alias: when `production` moves (a promotion or a rollback), serve the version it
now points to, without a restart and without failing a request.

A daemon thread per worker polls the alias, checks the new version's sha256, builds and warms its session and
contract, then swaps the pair in (bentos.model.ModelSlot). Importing this module imports MLflow (about 2 s).
"""

import logging
import os
import tempfile
import threading
from pathlib import Path

from bentos.model import ModelSlot
from bentos.settings import ServingSettings
from tasks.onnx.verified import ModelRefused, Provenance, ServedModel, load_verified
from tasks.registry.client import ModelVersionRef, download_version_onnx, find_version

logger = logging.getLogger("greenlight.serving")


class AliasFollower:
    """Keeps a ModelSlot on the version a registry alias points to."""

    def __init__(
        self, slot: ModelSlot, settings: ServingSettings, model_name: str, bento_model: ServedModel | None
    ) -> None:
        self.slot = slot
        self.tracking_uri = settings.tracking_uri
        self.alias = settings.follow_alias
        self.threads = settings.ort_threads
        self.verify_key = settings.verify_key
        self.model_name = model_name
        self.bento_model = bento_model  # already verified and warm: a rollback to it is instant
        self.refused: set[tuple[str, str, str]] = set()  # (version, sha256, signature) not to try again
        self.registry_down = False
        self.downloads = tempfile.TemporaryDirectory(prefix="greenlight-models-")
        # A download's progress bar is a screenful of carriage returns in a server log.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.stopped = threading.Event()

    def start(self, poll_s: float) -> threading.Thread:
        """Poll in a daemon thread until stop(); the first poll is the caller's, see poll()."""
        thread = threading.Thread(target=self.run, args=(poll_s,), name=f"follow-{self.alias}", daemon=True)
        thread.start()
        return thread

    def run(self, poll_s: float) -> None:
        while not self.stopped.wait(poll_s):
            self.poll()

    def stop(self) -> None:
        self.stopped.set()
        self.downloads.cleanup()

    def poll(self) -> None:
        """Look at the alias once and switch if it moved; never raises (a poll thread must not die)."""
        target = self.read_alias()
        current = self.slot.current
        if target is None or (current is not None and current.version == target.version):
            return
        key = (target.version, target.tags.get("onnx_sha256", ""), target.tags.get("signature", ""))
        if key in self.refused:
            return
        try:
            model = self.load(target)
        except ModelRefused as refused:
            self.refused.add(key)
            self.slot.refuse(target.version, refused)
            return
        except Exception as error:  # a failed download: the registry or its artifact store is unreachable
            self.note_registry_error(f"cannot fetch version {target.version}: {error}")
            return
        self.slot.serve(model)

    def read_alias(self) -> ModelVersionRef | None:
        try:
            target = find_version(self.tracking_uri, self.model_name, self.alias)
        except Exception as error:  # MlflowException, or the database / HTTP error beneath it
            self.note_registry_error(f"cannot read alias {self.alias!r}: {error}")
            return None
        if self.registry_down:
            logger.info("registry %s readable again", self.tracking_uri)
            self.registry_down = False
        return target

    def load(self, target: ModelVersionRef) -> ServedModel:
        """The target version, loaded only if its bytes match its registered onnx_sha256."""
        expected = target.tags.get("onnx_sha256")
        bento = self.bento_model
        if bento is not None and bento.version == target.version and bento.sha256 == expected:
            return bento
        return fetch_verified(target, Path(self.downloads.name) / f"v{target.version}", self.verify_key, self.threads)

    def note_registry_error(self, message: str) -> None:
        """Count every failure, log only the first of a run of them: a registry outage is one event."""
        self.slot.metrics.poll_failed()
        if not self.registry_down:
            logger.warning("%s (%s); still serving, will retry", " ".join(message.split())[:300], self.tracking_uri)
            self.registry_down = True


def fetch_verified(target: ModelVersionRef, directory: Path, verify_key: object, threads: int) -> ServedModel:
    """Download a version into directory and load it only if its bytes match its registered onnx_sha256 (and its
    signature, given a verify key): what a followed alias and a shadowed candidate (bentos/shadow.py) serve."""
    # The MLflow model directory: the .onnx file beside the MLmodel file that records the version's spec.
    model_dir = download_version_onnx(target, directory).parent
    provenance = Provenance(target.tags.get("onnx_sha256"), target.tags.get("signature"), verify_key)
    return load_verified(model_dir, provenance, target.name, target.version, threads)
