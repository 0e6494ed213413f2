"""Cache keys for the expensive stages (validation, training, export, compression), for Prefect's cache.

A key fingerprints a stage's inputs (frames by content, files by sha256, settings as JSON), the pipeline's code and
the computing libraries' versions, never the run's folders; a result whose files are gone moves to a fresh key.
No Prefect import here: the key function gets Prefect's task run context and uses its result store.
"""

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tasks.core.locations import PROJECT_ROOT

# Libraries whose version changes what a stage computes.
COMPUTING_LIBRARIES = (
    "torch",
    "onnx",
    "onnxruntime",
    "great-expectations",
    "pandas",
    "numpy",
    "scikit-learn",
    "tokenizers",
    "transformers",
    "pillow",
)
MAX_GENERATIONS = 50


@cache
def code_fingerprint() -> str:
    """sha256 over the pipeline's source files and the computing libraries' versions."""
    digest = hashlib.sha256()
    for path in sorted((PROJECT_ROOT / "tasks").rglob("*.py")):
        digest.update(str(path.relative_to(PROJECT_ROOT)).encode() + b"\0" + path.read_bytes())
    for name in COMPUTING_LIBRARIES:
        try:
            digest.update(f"{name}=={version(name)}".encode())
        except PackageNotFoundError:
            digest.update(f"{name} absent".encode())
    return digest.hexdigest()


def fingerprint(value: Any) -> str:
    """A stable digest of a stage input: frames by content, files by bytes, models and dataclasses by fields."""
    import pandas as pd
    from pydantic import BaseModel

    if isinstance(value, pd.DataFrame):
        return frame_digest(value)
    if isinstance(value, BaseModel):
        return hashlib.sha256(value.model_dump_json().encode()).hexdigest()
    if isinstance(value, Path):
        return hashlib.sha256(value.read_bytes()).hexdigest() if value.is_file() else f"path {value}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        parts = {f.name: fingerprint(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def frame_digest(frame) -> str:
    """Content digest of a DataFrame: its values row by row, its columns and their dtypes."""
    import pandas as pd

    digest = hashlib.sha256(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    try:
        digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    except TypeError:  # unhashable cells (lists, dicts): their text is the content
        digest.update(frame.astype(str).to_csv().encode())
    digest.update(image_files_digest(frame).encode())
    return digest.hexdigest()


def image_files_digest(frame) -> str:
    """Size and modification time of every image file a column of paths names: the frame holds only the paths,
    so an image replaced at the same path must still change the key (a stat per file, not a read)."""
    from tasks.core.images import is_path_column

    digest = hashlib.sha256()
    for column in frame.columns:
        if not is_path_column(frame[column]):
            continue
        values = frame[column].dropna()
        for path in values:
            try:
                status = Path(path).stat()
                digest.update(f"{path}\0{status.st_size}\0{status.st_mtime_ns}".encode())
            except OSError:
                digest.update(f"{path}\0absent".encode())
    return digest.hexdigest()


def stage_cache_key(
    stage: str, ignore: Iterable[str], files_of: Callable[[Any], Iterable[Path]]
) -> Callable[[Any, dict[str, Any]], str]:
    """A Prefect cache_key_fn: the stage's inputs (less the `ignore`d parameters: this run's folders) and the
    code; a cached result whose files (files_of(result)) are gone is skipped for the next generation's key."""
    ignored = set(ignore)

    def key(context: Any, parameters: dict[str, Any]) -> str:
        inputs = {name: fingerprint(value) for name, value in sorted(parameters.items()) if name not in ignored}
        base = hashlib.sha256(json.dumps({"code": code_fingerprint(), **inputs}, sort_keys=True).encode()).hexdigest()
        store = getattr(context, "result_store", None)
        for generation in range(MAX_GENERATIONS):
            candidate = f"greenlight-{stage}-{base[:32]}-g{generation}"
            if store is None or not store.exists(candidate) or still_valid(store, candidate, files_of):
                return candidate
        return f"greenlight-{stage}-{base[:32]}-g{MAX_GENERATIONS}"

    return key


def still_valid(store: Any, key: str, files_of: Callable[[Any], Iterable[Path]]) -> bool:
    """Every file the cached result names still exists (a cleaned runs folder invalidates it)."""
    try:
        result = store.read(key).result
    except Exception:  # an unreadable record (another version's pickle, a torn write) is no cache
        return False
    return all(Path(path).exists() for path in files_of(result))
