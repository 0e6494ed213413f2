"""Where captured traffic lives, and reading it back: a local folder or an object-store prefix (s3://bucket/prefix).

The service writes (bentos/capture.py), the monitor, late labels and shadow evidence read (tasks/monitoring/). One
layout for all of them, under the capture root:
  <model>/<version>/<start>-<pid>-<n>.parquet          the requests a version answered, with its answers
  <model>/shadow/<version>/<start>-<pid>-<n>.parquet   a shadowed candidate's answers beside production's
  <model>/labels/<received>-<n>.parquet                true labels fed back for captured requests
A file is readable once its writer closed it (rotation by size and age); one still being written is counted as such,
never read half.
"""

import os
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from tasks.core.errors import GreenlightError

SHADOW = "shadow"
LABELS = "labels"
# The variables an S3-compatible store's address is read from: boto's own, then the one MLflow's artifact store uses.
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")


class CaptureUnreadable(GreenlightError):
    """The capture location cannot be opened or listed."""


@dataclass(frozen=True)
class CapturedRows:
    """Captured rows read back: the table (None when there is none), and what was not read and why."""

    table: Any  # pyarrow.Table | None
    files: int  # files read
    unfinished: int  # files still being written (no footer yet): their rows come at the next look
    unreadable: tuple[str, ...]  # "path: error" for files that could not be read

    @property
    def rows(self) -> int:
        return 0 if self.table is None else self.table.num_rows


@dataclass(frozen=True)
class CaptureStore:
    """The capture root on its file system (pyarrow's: local or S3), named as the user gave it."""

    filesystem: Any  # pyarrow.fs.FileSystem
    root: str
    location: str

    @classmethod
    def open(cls, location: str, environ: dict[str, str] | None = None) -> "CaptureStore":
        """A local folder, or s3://bucket/prefix with the endpoint of an S3-compatible store taken from the
        environment (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or MLFLOW_S3_ENDPOINT_URL) and AWS_* credentials."""
        import pyarrow.fs as pafs

        env = os.environ if environ is None else environ
        parsed = urlparse(location)
        if parsed.scheme == "s3":
            endpoint = next((env[name] for name in ENDPOINT_VARIABLES if env.get(name)), None)
            options: dict[str, Any] = {"region": env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1"}
            if endpoint:
                address = urlparse(endpoint)
                options |= {"endpoint_override": address.netloc or address.path, "scheme": address.scheme or "https"}
            root = f"{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
            return cls(pafs.S3FileSystem(**options), root, location)
        if parsed.scheme not in ("", "file"):
            raise CaptureUnreadable(f"capture location {location!r}: only a folder or s3://bucket/prefix is supported")
        path = os.path.abspath(os.path.expanduser(parsed.path if parsed.scheme == "file" else location))
        return cls(pafs.LocalFileSystem(), path, location)

    @property
    def is_local(self) -> bool:
        return type(self.filesystem).__name__ == "LocalFileSystem"

    def folder(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def answers_folder(self, model: str, version: str) -> str:
        return self.folder(model, version)

    def shadow_folder(self, model: str, version: str) -> str:
        return self.folder(model, SHADOW, version)

    def labels_folder(self, model: str) -> str:
        return self.folder(model, LABELS)

    def make_folder(self, folder: str) -> None:
        self.filesystem.create_dir(folder, recursive=True)

    def open_output(self, path: str) -> Any:
        """A stream a ParquetWriter writes to; on an object store the object appears when it is closed."""
        return self.filesystem.open_output_stream(path)

    def listing(self, folder: str) -> list[Any]:
        """FileInfo of the entries directly in a folder ([] when it does not exist)."""
        import pyarrow.fs as pafs

        try:
            return self.filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        except OSError as error:
            raise CaptureUnreadable(f"cannot list {self.location} ({folder}): {error}") from error

    def versions(self, model: str) -> list[str]:
        """The versions of a model with captured answers, in number order."""
        import pyarrow.fs as pafs

        found = [i.base_name for i in self.listing(self.folder(model)) if i.type == pafs.FileType.Directory]
        return sorted((name for name in found if re.fullmatch(r"\d+", name)), key=int)

    def parquet_files(self, folder: str) -> list[str]:
        return sorted(i.path for i in self.listing(folder) if i.base_name.endswith(".parquet"))

    def read(self, folder: str, since: datetime | None = None, columns: list[str] | None = None) -> CapturedRows:
        """Every finished file of a folder as one table (rows with `time` >= since when given)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        tables, unfinished, unreadable = [], 0, []
        for path in self.parquet_files(folder):
            try:
                table = pq.read_table(path, filesystem=self.filesystem, columns=columns)
            except (OSError, pa.ArrowInvalid) as error:
                if "footer" in str(error).lower() or "magic" in str(error).lower() or "size 0" in str(error):
                    unfinished += 1  # still open in a running service
                else:
                    unreadable.append(f"{path}: {error}")
                continue
            if since is not None and "time" in table.column_names:
                table = table.filter(pc.greater_equal(table["time"], pa.scalar(since, table.schema.field("time").type)))
            tables.append(decoded(table))
        table = None
        if tables:
            # Dictionaries differ from file to file (request ids, labels): decoded once, they concatenate.
            table = pa.concat_tables(tables, promote_options="permissive")
        return CapturedRows(table, len(tables), unfinished, tuple(unreadable))


def decoded(table: Any) -> Any:
    """The table with dictionary columns as plain strings, so files with different dictionaries concatenate."""
    import pyarrow as pa

    columns = [
        column.cast(pa.string()) if pa.types.is_dictionary(column.type) else column for column in table.itercolumns()
    ]
    return pa.Table.from_arrays(columns, names=table.column_names)
