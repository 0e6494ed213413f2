"""Every model whose registry alias (production) points to a version, served by one process: each model is
loaded on its first request, follows its own alias (bentos/follow.py), and the least recently used is unloaded
when the loaded models pass the memory bound (a count and a size in bytes of ONNX files).

One daemon thread polls the registry for all of them: which models have the alias, and each loaded model's
alias (a move is swapped in by that model's ModelSlot, without failing a request).
"""

import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from bentos.follow import AliasFollower
from bentos.metrics import ServingMetrics
from bentos.model import ModelSlot
from bentos.settings import ServingSettings
from tasks.core.contract import Contract, Refusal, compile_contract
from tasks.registry.client import get_version, read_version_spec, versions_with_alias

logger = logging.getLogger("greenlight.serving")

# A name nobody registered is looked up in the registry at most this often (a typo in a loop costs no queries).
LISTING_MAX_AGE_S = 1.0


@dataclass(frozen=True)
class CatalogLimits:
    """How many models may stay loaded at once, and how many bytes of ONNX files (None: no bound)."""

    max_models: int | None = None
    max_bytes: int | None = None


@dataclass
class LoadedModel:
    """One model of the catalog: the slot answering its requests and the follower keeping it on its alias."""

    slot: ModelSlot
    follower: AliasFollower

    @property
    def version(self) -> str | None:
        current = self.slot.current
        return current.version if current is not None else None

    @property
    def size_bytes(self) -> int:
        current = self.slot.current
        return current.size_bytes if current is not None else 0


class ModelCatalog:
    """The models one service answers for, by registered name."""

    def __init__(self, settings: ServingSettings, limits: CatalogLimits) -> None:
        self.settings = settings
        self.limits = limits
        self.loaded: OrderedDict[str, LoadedModel] = OrderedDict()  # least recently used first
        self.lock = threading.Lock()  # loaded and listing are read by requests and changed by loads and polls
        self.loading: dict[str, threading.Lock] = {}
        self.listing: dict[str, str] = {}  # model name -> version its alias points to
        self.listing_error: str | None = None
        self.listed_at = 0.0
        self.stopped = threading.Event()
        self.contracts: dict[tuple[str, str], Contract | Refusal] = {}  # of models not loaded, for GET /models
        # model -> (the version that could not be loaded, why): refused again until the alias moves
        self.failed: dict[str, tuple[str, Refusal]] = {}

    @property
    def alias(self) -> str:
        return self.settings.follow_alias or "production"

    def start(self) -> None:
        """Read the listing now, then poll the registry in a daemon thread until stop()."""
        # A download's progress bar (a model's first load, a contract for GET /models) is noise in a server log.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.refresh_listing()
        threading.Thread(target=self.run, name="catalog-poll", daemon=True).start()

    def run(self) -> None:
        while not self.stopped.wait(self.settings.poll_s):
            try:
                self.poll()
            except Exception:  # a bug here must not stop every model from following its alias
                logger.exception("registry poll failed; polling again in %s s", self.settings.poll_s)

    def stop(self) -> None:
        self.stopped.set()
        with self.lock:
            models, self.loaded = list(self.loaded.values()), OrderedDict()
        for model in models:
            model.follower.stop()

    def poll(self) -> None:
        """One look at the registry: the listing (one query, every model's alias), then a closer look only at the
        loaded models whose alias moved; a poll costs the same however many models are loaded."""
        if not self.refresh_listing():
            return  # the registry is unreadable: the followers would fail the same way
        with self.lock:
            moved = [model for name, model in self.loaded.items() if self.listing.get(name) != model.version]
        for model in moved:
            model.follower.poll()  # never raises; a move swaps that model's slot only

    def refresh_listing(self) -> bool:
        """Read which models have the alias and where it points; False when the registry cannot be read."""
        try:
            listing = versions_with_alias(self.settings.tracking_uri, self.alias)
        except Exception as error:  # MlflowException, or the database / HTTP error beneath it
            if self.listing_error is None:
                logger.warning("cannot list the registry's models (%s); still serving, will retry", error)
            self.listing_error = str(error)
            return False
        if self.listing_error is not None:
            logger.info("registry %s readable again", self.settings.tracking_uri)
        with self.lock:
            self.listing, self.listing_error, self.listed_at = listing, None, time.monotonic()
        return True

    def get(self, name: str) -> LoadedModel | None:
        """The loaded model, marked as just used; None when it is not loaded (load() it, in a thread).

        Under the lock: moving a model to the end while the poll thread walks the loaded models would end that
        walk with "mutated during iteration" (an uncontended lock costs ~0.1 us a request)."""
        with self.lock:
            model = self.loaded.get(name)
            if model is not None:
                self.loaded.move_to_end(name)
            return model

    def load(self, name: str) -> LoadedModel | Refusal:
        """Load a model on its first request (blocking: call it from a thread); concurrent first requests for
        the same model wait for one load."""
        with self.lock:
            gate = self.loading.setdefault(name, threading.Lock())
        with gate:
            model = self.get(name)
            if model is not None:
                return model
            if name not in self.listing and time.monotonic() - self.listed_at > LISTING_MAX_AGE_S:
                self.refresh_listing()
            if name not in self.listing:
                return self.unknown(name)
            version = self.listing[name]
            failed = self.failed.get(name)
            if failed is not None and failed[0] == version:
                return failed[1]  # the same version again: no download per request; a move retries
            model = self.open(name)
            if model.slot.current is None:
                model.follower.stop()
                refusal = Refusal(503, f"model {name!r} cannot be served: {model.slot.problem}")
                self.failed[name] = (version, refusal)
                return refusal
            with self.lock:
                self.loaded[name] = model
            self.unload_past_bound(keep=name)
            return model

    def open(self, name: str) -> LoadedModel:
        slot = ModelSlot(ServingMetrics(name))
        follower = AliasFollower(slot, self.settings, name, None)
        follower.poll()
        return LoadedModel(slot, follower)

    def contract_of(self, name: str, version: str) -> Contract | Refusal:
        """A version's contract from its registered spec (the MLmodel file only, no model download); cached."""
        key = (name, version)
        if key not in self.contracts:
            try:
                spec = read_version_spec(get_version(self.settings.tracking_uri, name, version))
            except Exception as error:  # the registry or its artifact store cannot be read now: try next time
                return Refusal(503, f"the spec of {name} version {version} cannot be read: {str(error)[:200]}")
            if spec is None:
                found = Refusal(503, f"{name} version {version} records no spec; its contract shows once it loads")
            else:
                found = compile_contract(spec.dataset)
            self.contracts[key] = found
        return self.contracts[key]

    def unknown(self, name: str) -> Refusal:
        if self.listing_error is not None:
            return Refusal(503, f"the registry cannot be read to find model {name!r}: {self.listing_error[:200]}")
        return Refusal(404, f"no model named {name!r} has a {self.alias} version; GET /models lists the models")

    def unload_past_bound(self, keep: str) -> None:
        """Unload the least recently used models until the loaded ones fit the bound (never `keep`)."""
        while True:
            with self.lock:
                if not self.over_bound() or len(self.loaded) <= 1:
                    return
                name = next(n for n in self.loaded if n != keep)
                model = self.loaded.pop(name)
                count, size = len(self.loaded), sum(m.size_bytes for m in self.loaded.values())
            model.follower.stop()
            logger.info(
                "unloaded %s (least recently used) to stay within %s: %d models, %.1f MB of ONNX files loaded",
                name,
                self.bound_text(),
                count,
                size / 1e6,
            )

    def over_bound(self) -> bool:
        limits = self.limits
        if limits.max_models is not None and len(self.loaded) > limits.max_models:
            return True
        size = sum(model.size_bytes for model in self.loaded.values())
        return limits.max_bytes is not None and size > limits.max_bytes

    def bound_text(self) -> str:
        parts = []
        if self.limits.max_models is not None:
            parts.append(f"{self.limits.max_models} models")
        if self.limits.max_bytes is not None:
            parts.append(f"{self.limits.max_bytes / 1e6:.0f} MB")
        return " and ".join(parts)
