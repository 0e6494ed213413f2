"""New data in watched folders: a file is emitted once, complete, and never half-written; odd entries are skipped."""

import logging
import os
from pathlib import Path

import pytest

from deployments import watch
from deployments.arrivals import (
    ArrivalTracker,
    EmittedLedger,
    classify,
    incoming_entries,
    not_ready,
    watched_folders,
)
from tasks.core.config import RunConfig
from tasks.core.errors import ConfigRejected, GreenlightError

SPEC = """\
data: churn.csv
training: {max_epochs: 4, learning_rate: 0.01}
compression: {pruning: {levels: []}}
dataset:
  name: churn
  target: {name: churn, task: classification, labels: ["no", "yes"]}
  features:
    - {name: tenure, type: numeric}
model: {family: tabular_mlp}
"""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watched_folder(root: Path, name: str = "churn", spec: str = SPEC) -> Path:
    folder = root / name
    (folder / "incoming").mkdir(parents=True)
    (folder / "greenlight.yaml").write_text(spec)
    return folder


def complete_names(tracker: ArrivalTracker, folder: Path) -> list[str]:
    return [entry.path.name for entry, _ in tracker.complete(incoming_entries(folder))]


def test_a_file_still_growing_is_complete_only_after_it_stays_unchanged_for_the_settle_time(tmp_path):
    folder, clock = watched_folder(tmp_path), FakeClock()
    tracker = ArrivalTracker(settle_s=5, clock=clock)
    data = folder / "incoming" / "week-1.csv"
    data.write_text("tenure,churn\n1,no\n")
    assert complete_names(tracker, folder) == []  # first seen now
    clock.now += 4
    with data.open("a") as more:
        more.write("2,yes\n")  # the second half arrives: the clock starts again
    assert complete_names(tracker, folder) == []
    clock.now += 4.9
    assert complete_names(tracker, folder) == []
    clock.now += 0.1
    assert complete_names(tracker, folder) == ["week-1.csv"]


def test_a_partial_file_is_never_complete_and_its_rename_is_complete_at_once(tmp_path):
    folder, clock = watched_folder(tmp_path), FakeClock()
    tracker = ArrivalTracker(settle_s=5, clock=clock)
    partial = folder / "incoming" / "week-2.csv.partial"
    partial.write_text("tenure,churn\n1,no\n")
    clock.now += 60
    assert complete_names(tracker, folder) == []
    assert complete_names(tracker, folder) == []  # however long it sits there
    partial.rename(folder / "incoming" / "week-2.csv")
    assert complete_names(tracker, folder) == ["week-2.csv"]  # no settle wait: the writer said it is done


def test_a_handled_file_is_not_complete_again_until_it_changes(tmp_path):
    folder = watched_folder(tmp_path)
    tracker = ArrivalTracker(settle_s=0)
    data = folder / "incoming" / "week-3.csv"
    data.write_text("tenure,churn\n1,no\n")
    [(entry, snapshot)] = tracker.complete(incoming_entries(folder))
    tracker.mark_handled(entry.path, snapshot)
    assert complete_names(tracker, folder) == []
    data.write_text("tenure,churn\n1,no\n2,yes\n")
    assert complete_names(tracker, folder) == ["week-3.csv"]


def test_a_file_open_for_writing_is_not_ready_even_when_it_looks_settled(tmp_path):
    data = tmp_path / "slow.csv"
    with data.open("w") as writer:
        writer.write("tenure,churn\n")
        writer.flush()
        assert not_ready(data) == "is still open for writing by a process"
    assert not_ready(data) is None


def test_odd_entries_are_classified_without_being_opened(tmp_path):
    spec = tmp_path / "greenlight.yaml"
    (tmp_path / "notes.txt").write_text("hello")
    os.mkfifo(tmp_path / "pipe.csv")  # opening it would block the watcher
    (tmp_path / "loop.csv").symlink_to(tmp_path / "loop.csv")
    (tmp_path / "dangling.parquet").symlink_to(tmp_path / "gone.parquet")
    (tmp_path / "photos").mkdir()
    names = ["notes.txt", "pipe.csv", "loop.csv", "dangling.parquet"]
    kinds = {name: classify(tmp_path / name, spec) for name in names}
    assert {name: entry.kind for name, entry in kinds.items()} == dict.fromkeys(kinds, "ignored")
    assert "not a table (.csv, .parquet, .pq)" in kinds["notes.txt"].why
    assert kinds["pipe.csv"].why == "not a regular file or folder"
    assert "cannot be read" in kinds["loop.csv"].why and "cannot be read" in kinds["dangling.parquet"].why
    assert classify(tmp_path / ".~lock.week.csv#", spec).kind == "hidden"
    assert classify(tmp_path / "photos", spec).kind == "images"
    assert not_ready(tmp_path / "photos") == "holds no PNG or JPEG files in class subfolders (yet)"
    (tmp_path / "photos" / "cat").mkdir()
    (tmp_path / "photos" / "cat" / "1.png").write_bytes(b"\x89PNG")
    assert not_ready(tmp_path / "photos") is None


def test_a_file_that_vanishes_between_listing_and_reading_is_passed_over(tmp_path):
    folder = watched_folder(tmp_path)
    data = folder / "incoming" / "week-4.csv"
    data.write_text("tenure,churn\n1,no\n")
    entries = incoming_entries(folder)
    data.unlink()
    assert ArrivalTracker(settle_s=0).complete(entries) == []


def test_watched_folders_are_those_holding_a_spec_at_a_root_or_directly_below(tmp_path):
    watched_folder(tmp_path / "root", "churn")
    watched_folder(tmp_path / "root", "wine")
    (tmp_path / "root" / "scratch").mkdir()
    single = watched_folder(tmp_path, "single")
    found = watched_folders([tmp_path / "root", single, tmp_path / "missing"])
    assert found == [tmp_path / "root" / "churn", tmp_path / "root" / "wine", single]


def test_the_ledger_remembers_emissions_across_restarts_and_refuses_a_damaged_file(tmp_path):
    path = tmp_path / "arrivals.json"
    spec = tmp_path / "churn" / "greenlight.yaml"
    EmittedLedger(path).record("ab" * 32, spec, tmp_path / "week-1.csv", "event-1")
    again = EmittedLedger(path)
    assert again.find("ab" * 32, spec)["path"] == str(tmp_path / "week-1.csv")
    assert again.find("ab" * 32, tmp_path / "wine" / "greenlight.yaml") is None  # another spec: another run
    path.write_text("{not json")
    with pytest.raises(GreenlightError, match="remove it to emit every complete file"):
        EmittedLedger(path)


@pytest.fixture
def sent(monkeypatch) -> list:
    events: list = []
    monkeypatch.setattr(watch, "send_event", events.append)
    return events


def test_the_watcher_emits_each_new_file_once_with_its_run_configuration(tmp_path, sent):
    folder = watched_folder(tmp_path / "watch")
    (folder / "incoming" / "week-1.csv").write_text("tenure,churn\n1,no\n")
    ledger = tmp_path / "arrivals.json"
    watcher = watch.Watcher([tmp_path / "watch"], EmittedLedger(ledger), settle_s=0)
    watcher.scan()
    watcher.scan()
    [event] = sent
    assert event.event == "greenlight.data.arrived"
    payload = event.payload
    assert event.resource.id == f"greenlight.data.{payload['sha256']}"
    assert payload["path"] == str(folder / "incoming" / "week-1.csv") and payload["size"] == 18
    assert payload["spec_path"] == str(folder / "greenlight.yaml")
    config = RunConfig.model_validate(payload["config"])  # what the trigger hands the flow
    assert (config.data_path, config.spec_path) == (payload["path"], payload["spec_path"])
    assert config.model_name == "churn"  # the folder's, not the file's: every week's file is the same model
    assert (config.training.max_epochs, config.training.learning_rate) == (4, 0.01)
    assert config.compression.pruning.levels == ()
    # After a restart, the same bytes under another name are not emitted again.
    (folder / "incoming" / "week-1-copy.csv").write_text("tenure,churn\n1,no\n")
    watch.Watcher([tmp_path / "watch"], EmittedLedger(ledger), settle_s=0).scan()
    assert len(sent) == 1


def test_a_folder_of_images_arrives_as_one_file_with_every_image_counted(tmp_path, sent):
    folder = watched_folder(tmp_path / "watch")
    for label, count in [("cat", 2), ("dog", 1)]:
        (folder / "incoming" / "photos" / label).mkdir(parents=True)
        for number in range(count):
            (folder / "incoming" / "photos" / label / f"{number}.png").write_bytes(b"\x89PNG" + bytes([number]))
    watch.Watcher([tmp_path / "watch"], EmittedLedger(tmp_path / "arrivals.json"), settle_s=0).scan()
    [event] = sent
    assert event.payload["path"] == str(folder / "incoming" / "photos") and event.payload["size"] == 15


def test_an_event_the_server_did_not_take_is_sent_again_at_the_next_scan(tmp_path, monkeypatch, caplog):
    folder = watched_folder(tmp_path / "watch")
    (folder / "incoming" / "week-1.csv").write_text("tenure,churn\n1,no\n")
    ledger = EmittedLedger(tmp_path / "arrivals.json")
    watcher = watch.Watcher([tmp_path / "watch"], ledger, settle_s=0)

    def server_down(event) -> None:
        raise GreenlightError("the Prefect server at http://127.0.0.1:1/api did not take the event")

    monkeypatch.setattr(watch, "send_event", server_down)
    with caplog.at_level(logging.INFO, logger="greenlight.watch"):
        watcher.scan()
    assert "did not take the event" in caplog.text and ledger.entries == {}
    sent: list = []
    monkeypatch.setattr(watch, "send_event", sent.append)
    watcher.scan()
    assert len(sent) == 1 and len(ledger.entries) == 1


def test_the_watcher_logs_odd_files_once_and_goes_on(tmp_path, sent, caplog):
    folder = watched_folder(tmp_path / "watch")
    (folder / "incoming" / "notes.txt").write_text("hello")
    (folder / "incoming" / "loop.csv").symlink_to(folder / "incoming" / "loop.csv")
    (folder / "incoming" / "good.csv").write_text("tenure,churn\n1,no\n")
    watcher = watch.Watcher([tmp_path / "watch"], EmittedLedger(tmp_path / "arrivals.json"), settle_s=0)
    with caplog.at_level(logging.INFO, logger="greenlight.watch"):
        watcher.scan()
        watcher.scan()
    assert caplog.text.count("ignored") == 2 and "notes.txt" in caplog.text and "loop.csv" in caplog.text
    assert [Path(event.payload["path"]).name for event in sent] == ["good.csv"]


def test_a_spec_that_does_not_load_holds_its_files_back_with_the_reason(tmp_path, sent, caplog):
    folder = watched_folder(tmp_path / "watch", spec=SPEC.replace("max_epochs: 4", "max_epochs: 0"))
    (folder / "incoming" / "week-1.csv").write_text("tenure,churn\n1,no\n")
    watcher = watch.Watcher([tmp_path / "watch"], EmittedLedger(tmp_path / "arrivals.json"), settle_s=0)
    with caplog.at_level(logging.INFO, logger="greenlight.watch"):
        watcher.scan()
    assert sent == [] and "training.max_epochs" in caplog.text
    (folder / "greenlight.yaml").write_text(SPEC)  # fixed: the waiting file goes
    watcher.scan()
    assert len(sent) == 1


def test_submit_finds_the_spec_of_the_folder_a_file_was_dropped_in(tmp_path):
    folder = watched_folder(tmp_path)
    assert watch.spec_of(folder / "incoming" / "week-1.csv") == folder / "greenlight.yaml"
    assert watch.spec_of(folder / "week-1.csv") == folder / "greenlight.yaml"
    with pytest.raises(ConfigRejected, match="pass --spec"):
        watch.spec_of(tmp_path / "elsewhere" / "week-1.csv")


def test_submit_without_a_prefect_server_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(GreenlightError, match="PREFECT_API_URL is not set"):
        watch.submit(tmp_path / "week-1.csv", None)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # nothing listens on the discard port
    with pytest.raises(GreenlightError, match="PREFECT_API_URL"):
        watch.submit(tmp_path / "week-1.csv", None)
