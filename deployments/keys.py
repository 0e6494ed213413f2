"""`greenlight keys add|list|revoke`: the service's API keys, each scoped to models and a rate (bentos/access.py).

The key is printed once by `add` and never stored: the file keeps its sha256. Every edit replaces the file whole
(temp file + rename, mode 0600) under a lock, so a running server reads either the old file or the new one, and two
edits at once both land. The server re-reads the file within a second: no restart.
"""

import argparse
import fcntl
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import yaml

from bentos.access import EVERY_MODEL, KeyEntry, KeyFile, hash_key, read_key_file
from tasks.core.errors import ConfigRejected, GreenlightError
from tasks.core.locations import Locations

KEYS_FILE_NAME = "serving-keys.yaml"
# 32 random bytes (256 bits): nothing to guess, so the file's plain sha256 cannot be searched back to a key.
KEY_BYTES = 32
KEY_PREFIX = "glk_"  # says what a leaked string is (secret scanners key on prefixes)
HEADER = (
    "# Greenlight API keys: edit with `greenlight keys add|list|revoke` (docs/serving.md).\n"
    "# Only each key's sha256 is here; the server re-reads this file within a second of a change.\n"
)


def default_keys_file(home: Path, environ: Mapping[str, str] | None = None) -> Path:
    """GREENLIGHT_KEYS_FILE, else <home>/serving-keys.yaml."""
    env = os.environ if environ is None else environ
    named = env.get("GREENLIGHT_KEYS_FILE")
    return Path(named).expanduser() if named else home / KEYS_FILE_NAME


def add_keys_parser(commands: argparse._SubParsersAction) -> None:
    """The `keys` command and its three actions."""
    keys = commands.add_parser("keys", help="API keys for the service: the models each may call and its rate")
    actions = keys.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="make a key (printed once) for some models")
    add.add_argument("--models", required=True, help="comma-separated model names, or '*' for every model")
    add.add_argument("--rate", type=float, help="requests per second allowed (default: no limit)")
    add.add_argument("--name", default="", help="who or what the key is for (shown by `keys list`)")
    listing = actions.add_parser("list", help="every key: id, name, models, rate, created, revoked")
    revoke = actions.add_parser("revoke", help="revoke a key by its id: the server refuses it within a second")
    revoke.add_argument("key_id", help="the key's id, as `keys list` shows it")
    for action in (add, listing, revoke):
        action.add_argument("--keys-file", help=f"default: GREENLIGHT_KEYS_FILE, else <home>/{KEYS_FILE_NAME}")


def command_keys(args: argparse.Namespace, locations: Locations) -> int:
    path = Path(args.keys_file).expanduser() if args.keys_file else default_keys_file(locations.home)
    if args.action == "list":
        print(render_keys(existing_keys(path), path))
        return 0
    with locked(path):
        keys = existing_keys(path)
        if args.action == "add":
            key, entry = new_key(keys, model_names(args.models), args.rate, args.name)
            write_key_file(path, KeyFile(keys=(*keys.keys, entry)))
            print_new_key(key, entry, path)
        else:
            write_key_file(path, revoked(keys, args.key_id, path))
            print(f"revoked {args.key_id} in {path}: a running server refuses it within a second")
    return 0


def model_names(models: str) -> tuple[str, ...]:
    """--models a,b as ('a', 'b'); an empty name is refused."""
    names = tuple(name.strip() for name in models.split(","))
    if any(not name for name in names):
        raise ConfigRejected(f"--models {models!r} has an empty name: give names separated by commas, or '*'")
    return (EVERY_MODEL,) if EVERY_MODEL in names else names


def new_key(keys: KeyFile, models: tuple[str, ...], rate: float | None, name: str) -> tuple[str, KeyEntry]:
    """A fresh key and its entry: the id is random too, so it says nothing about the key."""
    if rate is not None and not rate > 0:
        raise ConfigRejected(f"--rate must be > 0 requests per second, got {rate:g}; leave it out for no limit")
    taken = {entry.id for entry in keys.keys}
    key_id = f"k_{secrets.token_hex(4)}"
    while key_id in taken:  # 4 random bytes: a clash is rare, never impossible
        key_id = f"k_{secrets.token_hex(4)}"
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    entry = KeyEntry(id=key_id, name=name, sha256=hash_key(key), models=models, rate=rate, created=created)
    return key, entry


def revoked(keys: KeyFile, key_id: str, path: Path) -> KeyFile:
    """The file with that key marked revoked (kept, so old audit lines still name a known key)."""
    if key_id not in {entry.id for entry in keys.keys}:
        raise GreenlightError(f"no key {key_id} in {path}: `greenlight keys list` shows the ids")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return KeyFile(
        keys=tuple(
            entry.model_copy(update={"revoked": entry.revoked or now}) if entry.id == key_id else entry
            for entry in keys.keys
        )
    )


def existing_keys(path: Path) -> KeyFile:
    return read_key_file(path) if path.exists() else KeyFile()


def write_key_file(path: Path, keys: KeyFile) -> None:
    """Replace the file whole, mode 0600: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = HEADER + yaml.safe_dump(keys.model_dump(mode="json"), sort_keys=False, default_flow_style=None)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)  # whatever the umask
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """One edit at a time: two `keys add` at once would otherwise each write the file without the other's key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def print_new_key(key: str, entry: KeyEntry, path: Path) -> None:
    models = "every model" if EVERY_MODEL in entry.models else ", ".join(entry.models)
    rate = f"{entry.rate:g} requests/s" if entry.rate is not None else "no rate limit"
    example = "MODEL" if EVERY_MODEL in entry.models else entry.models[0]
    print(f"key {entry.id}{f' ({entry.name})' if entry.name else ''}: {models}, {rate}; written to {path}")
    print(f"\n  {key}\n")
    print("This is the only time the key is shown: keep it secret (the file holds only its hash). Use it as:")
    print(f'  curl -H "Authorization: Bearer {key}" http://127.0.0.1:3000/models/{example}/predict ...')
    print(f"The server reads GREENLIGHT_KEYS_FILE={path}; a running one accepts the key within a second.")


def render_keys(keys: KeyFile, path: Path) -> str:
    """A table of the keys (never their hashes)."""
    if not keys.keys:
        return f"no keys in {path}: add one with `greenlight keys add --models NAME`"
    rows = [("id", "name", "models", "rate/s", "created", "revoked")]
    for entry in keys.keys:
        rate = f"{entry.rate:g}" if entry.rate is not None else "-"
        rows.append((entry.id, entry.name or "-", ",".join(entry.models), rate, entry.created, entry.revoked or "-"))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    return f"{path}:\n" + "\n".join(lines)
