"""An export's folder is there whole or not at all: a failure midway leaves nothing that looks finished."""

from pathlib import Path

import pytest

from tasks.core.errors import ConfigRejected
from tasks.release.handoff import staged_folder


def test_a_finished_export_appears_at_once_readable_by_others(tmp_path: Path) -> None:
    out = tmp_path / "export"
    with staged_folder(out) as staging:
        (staging / "config.pbtxt").write_text("name: 'x'")
        assert not out.exists()  # nothing at --out until every file is written
    assert (out / "config.pbtxt").read_text() == "name: 'x'"
    assert out.stat().st_mode & 0o777 == 0o755
    assert [path.name for path in tmp_path.iterdir()] == ["export"]


def test_a_failure_midway_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "export"
    with pytest.raises(RuntimeError), staged_folder(out) as staging:
        (staging / "model.onnx").write_bytes(b"half")
        raise RuntimeError("the container build failed")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_folder_is_filled_and_a_full_one_or_a_missing_parent_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with staged_folder(tmp_path / "empty") as staging:
        (staging / "README.md").write_text("steps")
    assert (tmp_path / "empty" / "README.md").exists()
    with pytest.raises(ConfigRejected, match="already exists and is not empty"), staged_folder(tmp_path / "empty"):
        pass
    with pytest.raises(ConfigRejected, match=r"parent folder .*missing does not exist"):
        with staged_folder(tmp_path / "missing" / "out"):
            pass
