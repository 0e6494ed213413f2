"""Capture: a sample of the requests a service answers, with its answers, written to Parquet off the request path.

GREENLIGHT_CAPTURE_RATE (0..1, default 0: off) is the share of model requests kept; GREENLIGHT_CAPTURE_DIR the folder
or object-store prefix, s3://bucket/prefix (`greenlight serve` passes <GREENLIGHT_HOME>/capture; the layout and the
reader: tasks/core/capture_store.py). On the request path a sample costs a coin flip and an append
to a bounded queue; a daemon thread turns the queue into rows every second (the request's fields as the contract
took them: the model's inputs, a column each; one row per record; the answer, the version, the request id the
caller got in X-Request-Id; an image file's pixels are not kept, only its answer) and appends
them to <folder>/<model>/<version>/<start time>-<pid>-<n>.parquet, a new file past GREENLIGHT_CAPTURE_FILE_BYTES or
GREENLIGHT_CAPTURE_FILE_AGE_S. Capture never slows or fails a request: a full queue or a failed write (a full or
read-only disk) drops the samples and counts them (greenlight_capture_samples_total{outcome=...} in /metrics).
"""

import itertools
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tasks.core.capture_store import CaptureStore
from tasks.core.contract import Contract, softmax
from tasks.core.features.contract import INPUT_DTYPES
from tasks.core.keys import SettingsRejected

logger = logging.getLogger("greenlight.serving")

# Samples waiting for the writer; past this the service is answering faster than the disk takes them: drop.
MAX_PENDING = 20_000
# Small, frequent writes: a second of 64-row requests at once held the interpreter for ~70 ms (p99 26 ms).
FLUSH_EVERY_S = 0.2
DEFAULT_FILE_BYTES = 64 * 1024 * 1024
# A file is readable once finished: a minute keeps what the monitor reads at most a minute old, ~60 files an hour.
DEFAULT_FILE_AGE_S = 60.0


@dataclass(frozen=True)
class CaptureSettings:
    rate: float = 0.0
    folder: Path | str | None = None  # a local folder or s3://bucket/prefix (tasks/core/capture_store.py)
    file_bytes: int = DEFAULT_FILE_BYTES
    file_age_s: float = DEFAULT_FILE_AGE_S

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "CaptureSettings":
        raw = env.get("GREENLIGHT_CAPTURE_RATE") or "0"
        try:
            rate = float(raw)
        except ValueError:
            rate = -1.0
        if not 0.0 <= rate <= 1.0:
            raise SettingsRejected(f"GREENLIGHT_CAPTURE_RATE must be a number from 0 to 1, got {raw!r}")
        folder = env.get("GREENLIGHT_CAPTURE_DIR")
        if rate > 0 and not folder:
            raise SettingsRejected("GREENLIGHT_CAPTURE_RATE is set but GREENLIGHT_CAPTURE_DIR is not: where to write")
        size = int(env.get("GREENLIGHT_CAPTURE_FILE_BYTES") or DEFAULT_FILE_BYTES)
        age = float(env.get("GREENLIGHT_CAPTURE_FILE_AGE_S") or DEFAULT_FILE_AGE_S)
        if size <= 0 or age <= 0:
            raise SettingsRejected("GREENLIGHT_CAPTURE_FILE_BYTES and GREENLIGHT_CAPTURE_FILE_AGE_S must be > 0")
        if folder and "://" not in folder:
            folder = Path(folder).expanduser()
        return cls(rate, folder or None, size, age)


@dataclass(frozen=True)
class Sample:
    """One answered request as the writer needs it: the model inputs the contract built, and the outputs."""

    model: str
    version: str
    request_id: str
    time: float
    contract: Contract
    feeds: dict[str, np.ndarray]
    outputs: np.ndarray


@dataclass
class OpenFile:
    writer: Any  # pyarrow.parquet.ParquetWriter
    stream: Any  # the output stream it writes to: its position is the file's size so far
    path: str
    opened: float


@dataclass
class Capture:
    """The sampler on the request path and the writer thread behind it."""

    settings: CaptureSettings
    chance: Callable[[], float] = random.random
    pending: deque = field(default_factory=deque)
    counts: dict[str, int] = field(default_factory=lambda: {"written": 0, "queue_full": 0, "write_error": 0})
    files: dict[tuple[str, str], OpenFile] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prefix = f"{os.getpid()}-{os.urandom(3).hex()}"
        self.ids = itertools.count()
        self.stopped = threading.Event()
        self.failing = False
        self.counter = None
        self.thread: threading.Thread | None = None
        self.opened_store: CaptureStore | None = None

    @property
    def store(self) -> CaptureStore:
        """The capture root, opened by the writer thread on first use (an object store's client is not cheap)."""
        if self.opened_store is None:
            self.opened_store = CaptureStore.open(str(self.settings.folder))
        return self.opened_store

    def request_id(self) -> str:
        """Unique in this process and across restarts (a random part per start), cheap: no uuid per request."""
        return f"{self.prefix}-{next(self.ids)}"

    def keep(self, model: Any, request_id: str, feeds: dict[str, np.ndarray], outputs: np.ndarray) -> None:
        """Keep this answered request (a ServedModel's) with probability `rate`; never raises, never blocks."""
        if self.settings.rate <= 0 or self.chance() >= self.settings.rate:
            return
        if len(self.pending) >= MAX_PENDING:
            self.count("queue_full", 1)
            return
        sample = Sample(model.name, model.version, request_id, time.time(), model.contract, feeds, outputs)
        self.pending.append(sample)
        if self.thread is None:
            self.start()

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name="capture-writer", daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopped.wait(FLUSH_EVERY_S):
            self.flush()

    def close(self) -> None:
        self.stopped.set()
        self.flush()
        for handle in self.files.values():
            self.close_file(handle)
        self.files.clear()

    # What this writer keeps, for its metric and log lines; the shadow (bentos/shadow.py) writes its own rows.
    what = "capture"
    counter_help = "Captured requests: written, or dropped (queue_full, write_error)"

    def count(self, outcome: str, samples: int) -> None:
        self.counts[outcome] += samples
        if self.counter is None:
            from prometheus_client import Counter  # in the worker, as bentos/metrics.py does

            self.counter = Counter(f"greenlight_{self.what}_samples", self.counter_help, ["outcome"], registry=None)
        self.counter.labels(outcome).inc(samples)

    def grouped(self, taken: list) -> dict[tuple[str, str], list]:
        """The waiting samples by the (model, version) whose files they go to."""
        groups: dict[tuple[str, str], list] = {}
        for sample in taken:
            groups.setdefault((sample.model, sample.version), []).append(sample)
        return groups

    def folder_of(self, key: tuple[str, str]) -> str:
        return self.store.answers_folder(*key)

    def table_of(self, items: list) -> Any:
        return capture_table(items)

    def flush(self) -> None:
        """Write what is waiting, grouped by model version; a failed write drops those samples and says so once."""
        taken = []
        while self.pending:
            taken.append(self.pending.popleft())
        for key, items in self.grouped(taken).items():
            try:
                self.write(key, items)
            except Exception as error:  # OSError (disk full, read-only), or pyarrow's own on a bad file
                self.count("write_error", len(items))
                if not self.failing:
                    logger.error(
                        "%s: dropping samples, cannot write under %s: %s", self.what, self.settings.folder, error
                    )
                self.failing = True
                self.files.pop(key, None)
                continue
            if self.failing:
                logger.info("%s: writing again under %s", self.what, self.settings.folder)
                self.failing = False
            self.count("written", len(items))
        self.rotate_old()

    def write(self, key: tuple[str, str], items: list) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = self.table_of(items)
        handle = self.files.get(key)
        if handle is None:
            folder = self.folder_of(key)
            self.store.make_folder(folder)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            path = f"{folder}/{stamp}-{self.prefix}-{next(self.ids)}.parquet"
            stream = self.store.open_output(path)
            # Measured on 64-row digits requests (4,096 numbers each): statistics (the monitor reads whole files and
            # never filters by them), dictionaries of numbers and snappy were 3/4 of the write (~80 -> ~20 us a
            # request); strings keep their dictionaries, which is their compression.
            strings = [f.name for f in table.schema if pa.types.is_dictionary(f.type) or pa.types.is_string(f.type)]
            writer = pq.ParquetWriter(
                stream, table.schema, write_statistics=False, use_dictionary=strings, compression="none"
            )
            handle = OpenFile(writer, stream, path, time.monotonic())
            self.files[key] = handle
        handle.writer.write_table(table)
        if handle.stream.tell() >= self.settings.file_bytes:
            self.close_file(self.files.pop(key))

    def rotate_old(self) -> None:
        now = time.monotonic()
        for key in [k for k, h in self.files.items() if now - h.opened >= self.settings.file_age_s]:
            self.close_file(self.files.pop(key))

    @staticmethod
    def close_file(handle: OpenFile) -> None:
        try:
            handle.writer.close()
            handle.stream.close()
        except Exception as error:  # the footer could not be written: the file is unreadable, say which
            logger.error("capture: %s could not be finished: %s", handle.path, error)


def kept_inputs(contract: Contract) -> dict[str, list[str]]:
    """ONNX input -> its columns, for the inputs kept: one value per column (an image file's pixels are not)."""
    spec = contract.spec
    return {name: cols for name, cols in spec.onnx_inputs().items() if spec.onnx_input_width(name) == len(cols)}


def capture_schema(contract: Contract) -> Any:
    """Columns of a capture file: who and when, each model input column as the contract built it, the answer.
    Repeated strings (request id, version, predicted label) are dictionary-encoded: built from indices, not copied.
    Only the string inputs can be null (a missing number is NaN): Parquet writes no definition levels for the rest,
    a quarter of the write (64-row digits requests: ~44 -> ~32 us each)."""
    import pyarrow as pa

    words = pa.dictionary(pa.int32(), pa.string())
    fields = [
        ("request_id", words),
        ("row", pa.int32()),
        ("time", pa.timestamp("ms", tz="UTC")),
        ("model_version", words),
    ]
    for name, columns in kept_inputs(contract).items():
        kind = pa.string() if INPUT_DTYPES.get(name) is object else pa.float32()
        fields += [(column, kind) for column in columns]
    if contract.spec.task == "regression":
        fields.append(("prediction", pa.float64()))
    else:
        fields.append(("prediction", words))
        fields += [(f"probability_{label}", pa.float64()) for label in contract.label_texts]
    return pa.schema([pa.field(name, kind, nullable=kind == pa.string()) for name, kind in fields])


def capture_table(samples: list[Sample]) -> Any:
    """The samples as one table, one row per record of each request: numpy arrays joined and handed to Arrow whole
    (measured: ~15 us per 64-row digits request, where a table from per-column Python lists took ~300 us)."""
    import pyarrow as pa

    contract = samples[0].contract
    rows = np.array([len(sample.outputs) for sample in samples])
    which = np.repeat(np.arange(len(samples), dtype=np.int32), rows)
    versions = sorted({sample.version for sample in samples})
    columns = [
        pa.DictionaryArray.from_arrays(which, [sample.request_id for sample in samples]),
        pa.array(np.concatenate([np.arange(count, dtype=np.int32) for count in rows])),
        pa.array(np.repeat([int(sample.time * 1000) for sample in samples], rows), pa.int64()).cast(
            pa.timestamp("ms", tz="UTC")
        ),
        pa.DictionaryArray.from_arrays(
            np.repeat(np.array([versions.index(s.version) for s in samples], dtype=np.int32), rows), versions
        ),
    ]
    for name, names in kept_inputs(contract).items():
        # Column-major once: each column is then handed to Arrow without a strided copy of its own.
        joined = np.asfortranarray(np.concatenate([sample.feeds[name] for sample in samples]))
        kind = pa.string() if joined.dtype == object else pa.float32()
        columns += [pa.array(joined[:, position], kind) for position in range(len(names))]
    outputs = np.concatenate([sample.outputs for sample in samples])
    columns += answer_columns(outputs, contract)
    return pa.Table.from_arrays(columns, schema=capture_schema(contract))


def answer_columns(outputs: np.ndarray, contract: Contract) -> list[Any]:
    import pyarrow as pa

    if contract.spec.task == "regression":
        return [pa.array(outputs.reshape(-1).astype(np.float64))]
    probabilities = softmax(outputs.astype(np.float64))
    predicted = pa.DictionaryArray.from_arrays(probabilities.argmax(axis=1).astype(np.int32), contract.label_texts)
    return [predicted, *(pa.array(probabilities[:, i]) for i in range(probabilities.shape[1]))]
