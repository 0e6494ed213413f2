"""Who may call which model, and how often: per-model API keys from a key file, today's single key, or nobody asked.

The key file (GREENLIGHT_KEYS_FILE, edited by `greenlight keys add|list|revoke`, deployments/keys.py) holds each key's
sha256, never the key, with the models it may call and its rate. The policy looks at the file at most once a second
and re-reads it when it changed, so a new or revoked key takes effect without a restart. Rates are token buckets in
this process: the service runs one worker, so a limit is per server process (docs/serving.md).
"""

import hashlib
import hmac
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from starlette.datastructures import Headers

from tasks.core.keys import SettingsRejected

logger = logging.getLogger("greenlight.serving")

EVERY_MODEL = "*"
# A look at the file is one stat() (~2 us); once a second keeps it invisible next to a request while a revoked key
# stops working within a second of `greenlight keys revoke`.
RELOAD_CHECK_S = 1.0
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="greenlight"'}


class KeyEntry(BaseModel):
    """One key in the file: its id (in audit lines), the hash of the key, what it may call and how often."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = ""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    models: tuple[str, ...] = Field(min_length=1)
    rate: float | None = Field(default=None, gt=0)  # requests per second; None: no limit
    created: str = ""
    revoked: str | None = None  # when it was revoked: kept so `keys list` and old audit lines still name it

    @field_validator("models")
    @classmethod
    def named(cls, models: tuple[str, ...]) -> tuple[str, ...]:
        if any(not name.strip() for name in models):
            raise ValueError("model names must not be empty ('*' means every model)")
        return models


class KeyFile(BaseModel):
    """The whole key file: `keys: [...]`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keys: tuple[KeyEntry, ...] = ()

    @model_validator(mode="after")
    def unique(self) -> "KeyFile":
        for what in ("id", "sha256"):
            values = [getattr(entry, what) for entry in self.keys]
            if len(set(values)) != len(values):
                raise ValueError(f"two keys share one {what}")
        return self


def hash_key(key: str) -> str:
    """The stored form of a key. Keys are 32 random bytes, so a fast hash is enough: there is nothing to guess."""
    return hashlib.sha256(key.encode()).hexdigest()


def read_key_file(path: Path) -> KeyFile:
    """The key file (YAML or JSON); SettingsRejected naming the file and what is wrong with it."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as error:
        raise SettingsRejected(
            f"key file {path} cannot be read: {error.strerror}; create it with `greenlight keys add --models NAME`"
        ) from error
    except yaml.YAMLError as error:
        raise SettingsRejected(f"key file {path} is not valid YAML: {error}") from error
    try:
        return KeyFile.model_validate(raw or {})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, problem['loc'])) or 'file'}: {problem['msg']}" for problem in error.errors()
        )
        raise SettingsRejected(f"key file {path} is not a valid key file: {problems}") from error


@dataclass(frozen=True)
class Caller:
    """Who is calling: a key id from the key file, "api-key" in the single-key mode, None when no key is needed."""

    key_id: str | None


@dataclass(frozen=True)
class Denied:
    """A refusal: 401, 403 or 429, one sentence, and the headers that go with it (WWW-Authenticate, Retry-After)."""

    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        """The JSON body, shaped like every other refusal of the endpoint."""
        return json.dumps({"error": self.message}).encode()


OPEN = Caller(None)
SINGLE_KEY = Caller("api-key")
MISSING = Denied(401, "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'", CHALLENGE)
WRONG_SINGLE = Denied(
    401, "missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'", CHALLENGE
)
UNKNOWN = Denied(401, "unknown API key: check it, or ask for one (greenlight keys add)", CHALLENGE)
REVOKED = Denied(401, "this API key was revoked: ask for a new one (greenlight keys add)", CHALLENGE)


def offered_key(headers: Headers) -> str:
    """The key a request offers: 'Authorization: Bearer <key>', else 'X-API-Key: <key>'; "" when neither."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else headers.get("x-api-key", "")


@dataclass(slots=True)
class TokenBucket:
    """Up to `capacity` requests at once, refilled at `rate` per second."""

    rate: float
    capacity: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, now: float) -> "TokenBucket":
        # One second's worth, and at least one request: a rate of 0.5/s still lets a first request through.
        capacity = max(1.0, rate)
        return cls(rate, capacity, capacity, now)

    def take(self, now: float) -> float:
        """0 when a request may go now (and counts it), else the seconds until one may."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(frozen=True)
class Grant:
    """What one live key may do, as admit() looks it up: by the hash of the key offered."""

    key_id: str
    models: frozenset[str]
    rate: float | None
    revoked: bool

    @classmethod
    def of(cls, entry: KeyEntry) -> "Grant":
        return cls(entry.id, frozenset(entry.models), entry.rate, entry.revoked is not None)

    def may_call(self, model: str) -> bool:
        return model in self.models or EVERY_MODEL in self.models


class Keyring:
    """The key file as admit() needs it, re-read when it changes on disk; the last good keys survive a bad edit."""

    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self.path = path
        self.clock = clock
        self.grants: dict[str, Grant] = {}
        self.buckets: dict[str, TokenBucket] = {}
        self.seen: tuple | None = None  # the file's (inode, mtime, size) when last read or found broken
        self.next_check = 0.0
        self.load(read_key_file(path), self.signature())

    def signature(self) -> tuple | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def load(self, keys: KeyFile, signature: tuple | None) -> None:
        now = self.clock()
        self.grants = {entry.sha256: Grant.of(entry) for entry in keys.keys}
        buckets = {}
        for grant in self.grants.values():
            kept = self.buckets.get(grant.key_id)
            if grant.rate is not None:  # a bucket survives a reload unless its rate changed
                same = kept is not None and kept.rate == grant.rate
                buckets[grant.key_id] = kept if same else TokenBucket.full(grant.rate, now)
        self.buckets = buckets
        self.seen = signature

    def refresh(self) -> None:
        """Re-read the file if it changed since the last look; on a bad file keep the keys and say so once."""
        signature = self.signature()
        if signature == self.seen:
            return
        try:
            keys = read_key_file(self.path)
        except SettingsRejected as error:
            self.seen = signature  # logged once per bad version of the file, not once per request
            logger.error("keeping the %d keys read before: %s", len(self.grants), error)
            return
        self.load(keys, signature)
        logger.info("re-read key file %s: %d keys", self.path, len(self.grants))

    def grant(self, offered: str) -> Grant | Denied:
        """The live grant of the key offered, or the 401 saying why there is none."""
        now = self.clock()
        if now >= self.next_check:
            self.next_check = now + RELOAD_CHECK_S
            self.refresh()
        if not offered:
            return MISSING
        grant = self.grants.get(hash_key(offered))
        if grant is None:
            return UNKNOWN
        return REVOKED if grant.revoked else grant

    def admit(self, offered: str, model: str) -> Caller | Denied:
        grant = self.grant(offered)
        if isinstance(grant, Denied):
            return grant
        now = self.clock()
        if not grant.may_call(model):
            return Denied(403, f"this API key may not call model '{model[:100]}'")
        bucket = self.buckets.get(grant.key_id)
        wait = bucket.take(now) if bucket is not None else 0.0
        if wait > 0.0:
            seconds = max(1, math.ceil(wait))
            return Denied(
                429,
                f"more than {bucket.rate:g} requests/s with this API key: retry after {seconds} s",
                {"Retry-After": str(seconds)},
            )
        return Caller(grant.key_id)


class AccessPolicy:
    """Admits or refuses each request: per-model keys (a key file), one key for everything, or open."""

    def __init__(self, api_key: str | None = None, keyring: Keyring | None = None) -> None:
        self.api_key = api_key.encode() if api_key is not None else None
        self.keyring = keyring

    @classmethod
    def from_settings(
        cls, keys_file: Path | None, api_key: str | None, clock: Callable[[], float] = time.monotonic
    ) -> "AccessPolicy":
        """keys_file: per-model keys; only api_key: one key for every model, no rate; neither: open.

        The clock (seconds, monotonic) paces the rates and the looks at the key file; tests pass their own."""
        if keys_file is not None and api_key is not None:
            raise SettingsRejected(
                f"both GREENLIGHT_KEYS_FILE={keys_file} and GREENLIGHT_API_KEY(_FILE) are set: choose one"
                " (the key file's keys are scoped per model; the single key opens every model)"
            )
        if keys_file is not None:
            return cls(keyring=Keyring(Path(keys_file), clock))
        return cls(api_key=api_key)

    @property
    def protected(self) -> bool:
        """Whether a request needs a key at all."""
        return self.keyring is not None or self.api_key is not None

    def admit(self, headers: Headers, model: str) -> Caller | Denied:
        """The caller, or why it may not call this model now."""
        if self.keyring is not None:
            return self.keyring.admit(offered_key(headers), model)
        if self.api_key is None:
            return OPEN
        if hmac.compare_digest(offered_key(headers).encode(), self.api_key):
            return SINGLE_KEY
        return WRONG_SINGLE

    def visible(self, headers: Headers, models: list[str]) -> list[str] | Denied:
        """The models this caller may call, for listings (GET /models, GET /): a key sees only its own models,
        and no rate is spent on looking."""
        if self.keyring is None:
            admitted = self.admit(headers, "")
            return admitted if isinstance(admitted, Denied) else models
        grant = self.keyring.grant(offered_key(headers))
        return grant if isinstance(grant, Denied) else [name for name in models if grant.may_call(name)]
