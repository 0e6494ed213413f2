"""Images as people already keep them: a folder with one subfolder per class, or a table column of file paths.

A folder becomes a table of two columns, IMAGE_COLUMN (each file's absolute path) and LABEL_COLUMN (its
subfolder's name), so validation, splitting, drift and the spec treat it like any other table. A table's
column of relative paths is read relative to the table's own folder, as a person writing it would mean.
"""

import hashlib
import os
from pathlib import Path

import pandas as pd

from tasks.core.errors import DataRejected
from tasks.core.images import IMAGE_SUFFIXES, is_path_column

IMAGE_COLUMN, LABEL_COLUMN = "image", "label"


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def class_folders(root: Path) -> list[Path]:
    """The visible subfolders of root, sorted: each is a class."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def folder_note(root: Path, loose: int, others: int, empty: list[str]) -> str:
    """What in the folder was not read, so a person sees it: loose images, other files, empty classes."""
    notes = []
    if loose:
        notes.append(f"{loose} image(s) directly in {root} (not in a class subfolder) were not read")
    if others:
        notes.append(f"{others} file(s) that are not .png/.jpg/.jpeg were not read")
    if empty:
        notes.append(f"subfolder(s) without images were not read: {', '.join(empty[:5])}")
    return "; ".join(notes)


def read_image_folder(root: Path) -> tuple[pd.DataFrame, str, str]:
    """The folder as rows (image path, label), a sha256 over every file's name and bytes, and a note.

    Raises DataRejected when the folder holds no class subfolder with images."""
    if not os.access(root, os.R_OK | os.X_OK):
        raise DataRejected(f"data folder {root} is not readable (permission denied); check its permissions")
    rows, others, empty = [], 0, []
    for folder in class_folders(root):
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        images = [p for p in files if is_image_file(p)]
        others += len(files) - len(images)
        if not images:
            empty.append(folder.name)
        rows += [(str(p.resolve()), folder.name) for p in images]
    loose = sum(1 for p in root.iterdir() if p.is_file() and is_image_file(p))
    if not rows:
        tables = sorted(p.name for p in root.iterdir() if p.suffix.lower() in (".csv", ".parquet", ".pq"))
        hint = f"; for a table pass the file itself: {root / tables[0]}" if tables else ""
        raise DataRejected(
            f"data folder {root} holds no class subfolder with .png/.jpg/.jpeg images: an image dataset is one"
            f" subfolder per class (photos/cat/1.png, photos/dog/2.jpg){hint}"
        )
    frame = pd.DataFrame(rows, columns=[IMAGE_COLUMN, LABEL_COLUMN])
    if frame[LABEL_COLUMN].str.fullmatch(r"-?\d+").all():
        # Folders named 0..9 are the labels 0..9, as a CSV column of them would be read.
        frame[LABEL_COLUMN] = frame[LABEL_COLUMN].astype("int64")
    return frame, folder_sha256(root, frame[IMAGE_COLUMN]), folder_note(root, loose, others, empty)


def folder_sha256(root: Path, paths: pd.Series) -> str:
    """One fingerprint of the dataset: every file's path relative to root and its bytes, in order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(Path(path).relative_to(root.resolve())).encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def resolve_image_paths(frame: pd.DataFrame, table: Path) -> pd.DataFrame:
    """Image path columns with relative paths made absolute against the table's folder."""
    base = table.resolve().parent
    for column in frame.columns:
        if is_path_column(frame[column]):
            frame[column] = frame[column].map(lambda v: v if not isinstance(v, str) else str(base / v.strip()))
    return frame
