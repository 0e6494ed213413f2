"""Per-model API keys, their rates and the audit log, as a caller and an operator meet them (bentos/access.py,
bentos/audit.py): no server, a key file in tmp_path, and a clock the test moves."""

import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.datastructures import Headers

from bentos.access import AccessPolicy, Caller, Denied, KeyEntry, KeyFile, hash_key
from bentos.audit import AuditLog
from bentos.settings import ServingSettings
from deployments.keys import write_key_file
from tasks.core.keys import SettingsRejected


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def entry(key_id: str, key: str, models: tuple[str, ...], rate: float | None = None, revoked: str | None = None):
    return KeyEntry(id=key_id, sha256=hash_key(key), models=models, rate=rate, created="2026-12-06T00:00:00+00:00",
                    revoked=revoked)  # fmt: skip


def bearer(key: str) -> Headers:
    return Headers({"authorization": f"Bearer {key}"})


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.yaml"
    write_key_file(path, KeyFile(keys=(entry("k_a", "key-a", ("penguins",)), entry("k_all", "key-all", ("*",)))))
    return path


def test_open_mode_admits_everyone():
    policy = AccessPolicy.from_settings(None, None)
    assert not policy.protected
    assert policy.admit(Headers({}), "penguins") == Caller(None)


def test_single_key_mode_admits_its_key_for_any_model_and_refuses_others():
    policy = AccessPolicy.from_settings(None, "s3cret")
    assert policy.protected
    assert policy.admit(bearer("s3cret"), "penguins") == Caller("api-key")
    assert policy.admit(Headers({"x-api-key": "s3cret"}), "reviews") == Caller("api-key")
    for headers in (Headers({}), bearer("wrong")):
        denied = policy.admit(headers, "penguins")
        assert isinstance(denied, Denied) and denied.status == 401
        assert denied.headers["WWW-Authenticate"].startswith("Bearer")


def test_both_a_key_file_and_a_single_key_is_refused(keys_file):
    with pytest.raises(SettingsRejected, match="choose one"):
        AccessPolicy.from_settings(keys_file, "s3cret")


def test_a_key_calls_its_models_only_and_the_403_names_no_other_model(keys_file):
    policy = AccessPolicy.from_settings(keys_file, None, clock=Clock())
    assert policy.protected
    assert policy.admit(bearer("key-a"), "penguins") == Caller("k_a")
    assert policy.admit(Headers({"x-api-key": "key-a"}), "penguins") == Caller("k_a")
    denied = policy.admit(bearer("key-a"), "reviews")
    assert isinstance(denied, Denied) and denied.status == 403
    assert "reviews" in denied.message and "penguins" not in denied.message
    assert json.loads(denied.body()) == {"error": denied.message}


def test_a_star_key_calls_every_model(keys_file):
    policy = AccessPolicy.from_settings(keys_file, None, clock=Clock())
    assert [policy.admit(bearer("key-all"), model) for model in ("penguins", "reviews", "digits")] == [
        Caller("k_all")
    ] * 3


def test_a_listing_shows_a_key_only_its_models_and_spends_no_rate(tmp_path):
    path = tmp_path / "keys.yaml"
    write_key_file(path, KeyFile(keys=(entry("k_one", "one", ("penguins",), rate=1.0), entry("k_all", "all", ("*",)))))
    policy = AccessPolicy.from_settings(path, None, clock=Clock())
    models = ["digits", "penguins", "reviews"]
    assert [policy.visible(bearer("one"), models) for _ in range(3)] == [["penguins"]] * 3
    assert policy.admit(bearer("one"), "penguins") == Caller("k_one")  # its one request per second is still there
    assert policy.visible(bearer("all"), models) == models
    assert policy.visible(Headers({}), models).status == 401
    assert AccessPolicy.from_settings(None, None).visible(Headers({}), models) == models
    assert AccessPolicy.from_settings(None, "s3cret").visible(bearer("nope"), models).status == 401


def test_no_key_or_an_unknown_key_is_401(keys_file):
    policy = AccessPolicy.from_settings(keys_file, None, clock=Clock())
    for headers in (Headers({}), bearer("key-b"), Headers({"authorization": "Basic a2V5LWE="})):
        denied = policy.admit(headers, "penguins")
        assert isinstance(denied, Denied) and denied.status == 401 and "WWW-Authenticate" in denied.headers


def test_a_key_revoked_on_disk_is_refused_within_a_second_without_a_restart(keys_file):
    clock = Clock()
    policy = AccessPolicy.from_settings(keys_file, None, clock=clock)
    assert policy.admit(bearer("key-a"), "penguins") == Caller("k_a")
    revoked = entry("k_a", "key-a", ("penguins",), revoked="2026-12-06T01:00:00+00:00")
    write_key_file(keys_file, KeyFile(keys=(revoked, entry("k_b", "key-b", ("penguins",)))))
    clock.advance(0.5)  # within the second since the last look: the file is not looked at yet
    assert policy.admit(bearer("key-a"), "penguins") == Caller("k_a")
    clock.advance(0.6)
    denied = policy.admit(bearer("key-a"), "penguins")
    assert isinstance(denied, Denied) and denied.status == 401 and "revoked" in denied.message
    assert policy.admit(bearer("key-b"), "penguins") == Caller("k_b")  # a key added meanwhile works


def test_past_the_rate_429_with_retry_after_then_admitted_again(tmp_path):
    path = tmp_path / "keys.yaml"
    write_key_file(path, KeyFile(keys=(entry("k_slow", "slow", ("penguins",), rate=2.0),)))
    clock = Clock()
    policy = AccessPolicy.from_settings(path, None, clock=clock)
    assert [policy.admit(bearer("slow"), "penguins") for _ in range(2)] == [Caller("k_slow")] * 2  # a 1 s burst
    denied = policy.admit(bearer("slow"), "penguins")
    assert isinstance(denied, Denied) and denied.status == 429
    assert int(denied.headers["Retry-After"]) >= 1
    clock.advance(0.5)  # half a second at 2/s: one request's worth
    assert policy.admit(bearer("slow"), "penguins") == Caller("k_slow")
    assert policy.admit(bearer("slow"), "penguins").status == 429


def test_a_slow_rate_still_lets_one_request_through_and_asks_to_wait_whole_seconds(tmp_path):
    path = tmp_path / "keys.yaml"
    write_key_file(path, KeyFile(keys=(entry("k_tenth", "tenth", ("*",), rate=0.1),)))
    policy = AccessPolicy.from_settings(path, None, clock=Clock())
    assert policy.admit(bearer("tenth"), "digits") == Caller("k_tenth")
    assert policy.admit(bearer("tenth"), "digits").headers["Retry-After"] == "10"


def test_a_broken_key_file_at_start_is_refused_naming_the_file(tmp_path):
    broken = tmp_path / "keys.yaml"
    broken.write_text("keys:\n  - id: k_a\n    sha256: not-a-hash\n    models: []\n")
    with pytest.raises(SettingsRejected, match=str(broken)) as raised:
        AccessPolicy.from_settings(broken, None)
    assert "sha256" in str(raised.value) and "models" in str(raised.value)
    with pytest.raises(SettingsRejected, match="cannot be read.*greenlight keys add"):
        AccessPolicy.from_settings(tmp_path / "missing.yaml", None)
    (tmp_path / "bad.yaml").write_text("keys: [\n")
    with pytest.raises(SettingsRejected, match="not valid YAML"):
        AccessPolicy.from_settings(tmp_path / "bad.yaml", None)


def test_a_key_file_broken_by_an_edit_keeps_the_last_good_keys_and_says_so_once(keys_file, caplog):
    clock = Clock()
    policy = AccessPolicy.from_settings(keys_file, None, clock=clock)
    keys_file.write_text("keys: [{id: k_x}]\n")
    with caplog.at_level(logging.ERROR, logger="greenlight.serving"):
        for _ in range(3):
            clock.advance(1.1)
            assert policy.admit(bearer("key-a"), "penguins") == Caller("k_a")
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1 and str(keys_file) in errors[0].getMessage()


def test_settings_read_the_key_file_and_audit_log_variables(tmp_path):
    settings = ServingSettings.from_env(
        {"GREENLIGHT_KEYS_FILE": str(tmp_path / "k.yaml"), "GREENLIGHT_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
         "GREENLIGHT_AUDIT_MAX_BYTES": "1000"}
    )  # fmt: skip
    assert (settings.keys_file, settings.audit_log, settings.audit_max_bytes) == (
        tmp_path / "k.yaml",
        tmp_path / "audit.jsonl",
        1000,
    )
    with pytest.raises(SettingsRejected, match="GREENLIGHT_AUDIT_MAX_BYTES"):
        ServingSettings.from_env({"GREENLIGHT_AUDIT_MAX_BYTES": "lots"})


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_audit_lines_record_each_request_and_no_payload(tmp_path):
    path = tmp_path / "logs" / "audit.jsonl"
    audit = AuditLog.open(path)
    audit.write("k_a", "penguins", "3", 200, 5, 0.00123, "/models/penguins/predict")
    audit.write(None, 'odd "name"', None, 401, 0, 0.0001, "/models/odd/predict")
    audit.close()
    first, second = read_lines(path)
    assert {k: v for k, v in first.items() if k != "time"} == {
        "key": "k_a",
        "model": "penguins",
        "version": "3",
        "status": 200,
        "rows": 5,
        "latency_ms": 1.23,
        "endpoint": "/models/penguins/predict",
    }
    written = datetime.strptime(first["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - written).total_seconds()) < 60
    assert len(first["time"]) == len("2026-12-06T11:16:17.123Z")  # milliseconds, UTC
    assert (second["key"], second["model"], second["version"], second["status"]) == (None, 'odd "name"', None, 401)
    audit.write("k_a", "penguins", "3", 200, 1, 0.001, "/predict")  # after close: dropped, not an error
    assert len(read_lines(path)) == 2


def test_audit_lines_reach_the_file_without_close_within_the_flush_interval(tmp_path):
    path = tmp_path / "audit.jsonl"
    audit = AuditLog.open(path, flush_every_s=0.01)
    audit.write("k_a", "penguins", "3", 429, 0, 0.0, "/models/penguins/predict")
    deadline = time.monotonic() + 2.0
    while not path.read_text() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert read_lines(path)[0]["status"] == 429
    audit.close()


def test_audit_log_rotates_past_max_bytes_and_keeps_only_the_backups(tmp_path):
    path = tmp_path / "audit.jsonl"
    audit = AuditLog.open(path, max_bytes=1000, backups=2)
    for index in range(60):  # ~150 bytes a line: ~6 lines a file, so ~10 files' worth
        audit.write("k_a", "penguins", str(index), 200, 1, 0.001, "/models/penguins/predict")
    audit.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all(os.path.getsize(tmp_path / name) <= 1000 for name in files)
    versions = [int(line["version"]) for name in reversed(files) for line in read_lines(tmp_path / name)]
    assert versions == list(range(60 - len(versions), 60))  # the newest lines, in order, none lost within the kept
    assert len(versions) >= 12
