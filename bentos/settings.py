"""How the endpoint is run, read once from the environment of each worker when it starts.

The variables (GREENLIGHT_API_KEY(_FILE), GREENLIGHT_FOLLOW_ALIAS, GREENLIGHT_ALIAS_POLL_S, MLFLOW_TRACKING_URI,
GREENLIGHT_ORT_THREADS, GREENLIGHT_VERIFY_KEY_FILE, GREENLIGHT_KEYS_FILE, GREENLIGHT_AUDIT_LOG,
GREENLIGHT_AUDIT_MAX_BYTES, GREENLIGHT_AUDIT_BACKUPS) and what each does: docs/serving.md; GREENLIGHT_SHADOW_RATE:
docs/monitoring.md.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bentos.audit import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES, AuditLog
from bentos.capture import CaptureSettings
from bentos.shadow import shadow_rate
from tasks.core.keys import SettingsRejected, load_verify_key, read_api_key

# A poll is one or two registry queries (~15 ms on SQLite); every 5 s keeps it far below 1% of a core
# while a promotion still reaches the endpoint within seconds.
DEFAULT_POLL_S = 5.0
# Concurrency comes from requests and workers; one thread per inference keeps a worker on one core
# instead of spinning a thread pool on cores that other workers need.
DEFAULT_ORT_THREADS = 1


@dataclass(frozen=True)
class ServingSettings:
    """Endpoint settings; the API key is kept out of repr so it cannot reach a log line by accident."""

    api_key: str | None = field(default=None, repr=False)
    verify_key: Any = field(default=None, repr=False)  # ed25519 public key: only signed models serve
    follow_alias: str | None = None
    poll_s: float = DEFAULT_POLL_S
    tracking_uri: str | None = None
    ort_threads: int = DEFAULT_ORT_THREADS
    keys_file: Path | None = None  # per-model keys (bentos/access.py); instead of api_key
    audit_log: Path | None = None  # one JSON line per request (bentos/audit.py); None: no audit log
    audit_max_bytes: int = DEFAULT_MAX_BYTES
    audit_backups: int = DEFAULT_BACKUPS
    capture: CaptureSettings = CaptureSettings()  # a sample of requests and answers (bentos/capture.py)
    shadow_rate: float = 1.0  # share of requests a shadowed candidate also answers (bentos/shadow.py)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ServingSettings":
        env = os.environ if environ is None else environ
        follow_alias = env.get("GREENLIGHT_FOLLOW_ALIAS") or None
        tracking_uri = env.get("MLFLOW_TRACKING_URI") or None
        if follow_alias and not tracking_uri:
            raise SettingsRejected(
                f"GREENLIGHT_FOLLOW_ALIAS={follow_alias} needs MLFLOW_TRACKING_URI: the registry whose alias to follow"
            )
        return cls(
            api_key=read_api_key(env),
            verify_key=load_verify_key(env),
            follow_alias=follow_alias,
            poll_s=positive(env, "GREENLIGHT_ALIAS_POLL_S", DEFAULT_POLL_S, float),
            tracking_uri=tracking_uri,
            ort_threads=int(positive(env, "GREENLIGHT_ORT_THREADS", DEFAULT_ORT_THREADS, int)),
            keys_file=Path(env["GREENLIGHT_KEYS_FILE"]).expanduser() if env.get("GREENLIGHT_KEYS_FILE") else None,
            audit_log=Path(env["GREENLIGHT_AUDIT_LOG"]).expanduser() if env.get("GREENLIGHT_AUDIT_LOG") else None,
            audit_max_bytes=int(positive(env, "GREENLIGHT_AUDIT_MAX_BYTES", DEFAULT_MAX_BYTES, int)),
            audit_backups=int(positive(env, "GREENLIGHT_AUDIT_BACKUPS", DEFAULT_BACKUPS, int)),
            capture=CaptureSettings.from_env(env),
            shadow_rate=shadow_rate(env),
        )


def positive(env: Mapping[str, str], name: str, default: float, kind: type) -> float:
    """A number > 0 from the environment, or the default when unset."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise SettingsRejected(f"{name} must be a {kind.__name__} > 0, got {raw!r}")
    return value


def open_audit_log(settings: ServingSettings) -> AuditLog | None:
    """The audit log the settings name, opened for appending; None when there is none."""
    if settings.audit_log is None:
        return None
    return AuditLog.open(settings.audit_log, settings.audit_max_bytes, settings.audit_backups)
