"""Capture without a server: a sample of answered requests becomes Parquet rows (the fields as the contract took
them, the answer, the version, the request id), files rotate by size, and a disk that cannot be written drops
samples and counts them without raising."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_request_contract import penguin_records, penguins

from bentos.capture import Capture, CaptureSettings
from tasks.core.contract import compile_contract
from tasks.core.keys import SettingsRejected
from tasks.core.spec import digits_spec


class Version:
    """What capture reads of a served version."""

    def __init__(self, contract, version: str = "3") -> None:
        self.name, self.version, self.contract = "penguins", version, contract


def capture(tmp_path: Path, rate: float = 1.0, file_bytes: int = 64 << 20) -> Capture:
    return Capture(CaptureSettings(rate, tmp_path / "capture", file_bytes), chance=iter([0.5] * 10_000).__next__)


def feeds(contract, body: dict) -> dict[str, np.ndarray]:
    """The model inputs the contract builds from a request body, as the service hands them to capture."""
    return contract.parse(json.dumps(body).encode()).feeds


def rows_of(folder: Path) -> list[dict]:
    return [row for path in sorted(folder.rglob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def test_captured_requests_are_rows_with_their_fields_answer_version_and_request_id(tmp_path) -> None:
    contract = compile_contract(penguins())
    records = penguin_records(slice(0, 3))
    kept = capture(tmp_path)
    logits = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]], dtype=np.float32)
    kept.keep(Version(contract), "r-1", feeds(contract, {"records": records}), logits)
    kept.close()
    rows = rows_of(tmp_path / "capture" / "penguins" / "3")
    assert [(r["request_id"], r["row"], r["model_version"]) for r in rows] == [
        ("r-1", 0, "3"),
        ("r-1", 1, "3"),
        ("r-1", 2, "3"),
    ]
    assert [r["prediction"] for r in rows] == ["Adelie", "Chinstrap", "Gentoo"]
    assert rows[0]["island"] == records[0]["island"]
    assert rows[0]["bill_length_mm"] == pytest.approx(records[0]["bill_length_mm"])
    assert rows[0]["probability_Adelie"] == pytest.approx(np.exp(3) / (np.exp(3) + 2))
    assert kept.counts["written"] == 1


def test_the_rows_form_and_rate_zero(tmp_path) -> None:
    contract = compile_contract(digits_spec().dataset)
    kept = capture(tmp_path)
    pixels = [[1.0] * 64, [2.0] * 64]
    kept.keep(Version(contract), "r-2", feeds(contract, {"rows": pixels}), np.zeros((2, 10), np.float32))
    off = Capture(CaptureSettings(0.0, tmp_path / "off"))
    off.keep(Version(contract), "r-3", feeds(contract, {"rows": pixels}), np.zeros((2, 10), np.float32))
    kept.close(), off.close()
    rows = rows_of(tmp_path / "capture")
    assert len(rows) == 2 and [rows[1][column] for column in contract.rows.columns] == [2.0] * 64
    assert not (tmp_path / "off").exists() and off.thread is None


def test_files_rotate_by_size(tmp_path) -> None:
    contract = compile_contract(penguins())
    kept = capture(tmp_path, file_bytes=1)  # every write closes its file
    inputs = feeds(contract, {"records": penguin_records(slice(0, 2))})
    for flush in range(3):
        kept.keep(Version(contract), f"r-{flush}", inputs, np.zeros((2, 3), np.float32))
        kept.flush()
    kept.close()
    files = sorted((tmp_path / "capture").rglob("*.parquet"))
    assert len(files) == 3 and len(rows_of(tmp_path / "capture")) == 6


def test_a_disk_that_cannot_be_written_drops_samples_and_counts_them(tmp_path, caplog) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the capture folder should be")
    kept = Capture(CaptureSettings(1.0, blocked), chance=lambda: 0.0)
    contract = compile_contract(penguins())
    inputs = feeds(contract, {"records": penguin_records(slice(0, 1))})
    for request in range(5):
        kept.keep(Version(contract), f"r-{request}", inputs, np.zeros((1, 3), np.float32))
    kept.close()  # no exception reaches the caller
    assert kept.counts == {"written": 0, "queue_full": 0, "write_error": 5}
    assert caplog.text.count("capture: dropping samples") == 1


def test_settings_refuse_a_rate_outside_zero_to_one_or_without_a_folder() -> None:
    assert CaptureSettings.from_env({}).rate == 0
    with pytest.raises(SettingsRejected, match="from 0 to 1"):
        CaptureSettings.from_env({"GREENLIGHT_CAPTURE_RATE": "1.5", "GREENLIGHT_CAPTURE_DIR": "x"})
    with pytest.raises(SettingsRejected, match="GREENLIGHT_CAPTURE_DIR"):
        CaptureSettings.from_env({"GREENLIGHT_CAPTURE_RATE": "0.1"})
