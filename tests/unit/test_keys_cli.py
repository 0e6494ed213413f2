"""`greenlight keys add|list|revoke` on a key file in tmp_path, as an operator runs it (deployments/keys.py)."""

import os
import re
import stat
from pathlib import Path

import pytest
from starlette.datastructures import Headers

from bentos.access import AccessPolicy, Caller, read_key_file
from deployments.cli import main


@pytest.fixture
def keys_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("MLFLOW_TRACKING_URI", "BENTOML_HOME", "PREFECT_HOME"):  # main() exports them: restored after
        monkeypatch.setenv(name, os.environ[name])
    monkeypatch.setenv("GREENLIGHT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GREENLIGHT_KEYS_FILE", raising=False)
    return tmp_path / "secrets" / "keys.yaml"


def add_key(keys_file: Path, capsys, *flags: str) -> tuple[str, str]:
    """Runs `keys add` and returns (id, key) as printed."""
    assert main(["keys", "add", "--keys-file", str(keys_file), *flags]) == 0
    printed = capsys.readouterr().out
    key_id = re.search(r"^key (k_[0-9a-f]{8})", printed, re.MULTILINE).group(1)
    key = re.search(r"^\s+(glk_\S+)$", printed, re.MULTILINE).group(1)
    assert f'Authorization: Bearer {key}"' in printed
    return key_id, key


def test_add_list_revoke(keys_file, capsys):
    key_id, key = add_key(keys_file, capsys, "--models", "penguins,reviews", "--rate", "20", "--name", "team-a")
    other_id, _ = add_key(keys_file, capsys, "--models", "*")
    text = keys_file.read_text()
    assert key not in text and key.removeprefix("glk_") not in text
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert [path.name for path in keys_file.parent.iterdir() if not path.name.endswith(".lock")] == ["keys.yaml"]
    policy = AccessPolicy.from_settings(keys_file, None)
    assert policy.admit(Headers({"authorization": f"Bearer {key}"}), "reviews") == Caller(key_id)
    assert policy.admit(Headers({"authorization": f"Bearer {key}"}), "digits").status == 403

    assert main(["keys", "list", "--keys-file", str(keys_file)]) == 0
    listed = capsys.readouterr().out
    assert re.search(rf"{key_id}\s+team-a\s+penguins,reviews\s+20\s+\d{{4}}-", listed)
    assert re.search(rf"{other_id}\s+-\s+\*\s+-\s+", listed)
    assert read_key_file(keys_file).keys[0].sha256 not in listed

    assert main(["keys", "revoke", key_id, "--keys-file", str(keys_file)]) == 0
    assert "revoked" in capsys.readouterr().out
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    denied = AccessPolicy.from_settings(keys_file, None).admit(Headers({"x-api-key": key}), "penguins")
    assert denied.status == 401 and "revoked" in denied.message
    assert main(["keys", "list", "--keys-file", str(keys_file)]) == 0
    assert re.search(rf"{key_id}.*\d{{4}}-\S+\s+\d{{4}}-\S+$", capsys.readouterr().out, re.MULTILINE)


def test_revoking_an_unknown_id_says_so_and_exits_1(keys_file, capsys):
    add_key(keys_file, capsys, "--models", "penguins")
    before = keys_file.read_text()
    assert main(["keys", "revoke", "k_nothere", "--keys-file", str(keys_file)]) == 1
    assert "no key k_nothere" in capsys.readouterr().err
    assert keys_file.read_text() == before


def test_models_must_be_names_and_rate_positive(keys_file, capsys):
    assert main(["keys", "add", "--models", "penguins,,reviews", "--keys-file", str(keys_file)]) == 2
    assert "empty name" in capsys.readouterr().err
    assert main(["keys", "add", "--models", "penguins", "--rate", "0", "--keys-file", str(keys_file)]) == 2
    assert "--rate must be > 0" in capsys.readouterr().err
    assert not keys_file.exists()


def test_the_default_file_is_in_the_home_and_listing_none_says_how_to_add(keys_file, tmp_path, capsys):
    assert main(["keys", "list"]) == 0
    assert "no keys in" in capsys.readouterr().out
    assert main(["keys", "add", "--models", "penguins"]) == 0
    capsys.readouterr()
    assert len(read_key_file(tmp_path / "home" / "serving-keys.yaml").keys) == 1


def test_serve_uses_the_key_file_keys_add_wrote_and_refuses_one_it_cannot_use(keys_file, capsys, monkeypatch):
    """What `greenlight serve` hands the server (either kind): the default key file once it exists, the audit log
    always; a named file that is missing or broken is refused before any server starts."""
    from deployments.cli import access_environment
    from tasks.core.errors import GreenlightError
    from tasks.core.locations import resolve_locations

    for name in ("GREENLIGHT_API_KEY", "GREENLIGHT_API_KEY_FILE", "GREENLIGHT_AUDIT_LOG", "GREENLIGHT_CAPTURE_DIR"):
        monkeypatch.delenv(name, raising=False)
    locations = resolve_locations()
    assert access_environment(locations) == {
        "GREENLIGHT_AUDIT_LOG": str(locations.home / "audit" / "serving.jsonl"),
        "GREENLIGHT_CAPTURE_DIR": str(locations.home / "capture"),
    }
    default = locations.home / "serving-keys.yaml"
    assert main(["keys", "add", "--models", "penguins"]) == 0  # no --keys-file: the default one
    capsys.readouterr()
    assert access_environment(locations)["GREENLIGHT_KEYS_FILE"] == str(default)
    monkeypatch.setenv("GREENLIGHT_API_KEY", "s3cret")  # a single key set on purpose wins over the default file
    assert "GREENLIGHT_KEYS_FILE" not in access_environment(locations)
    monkeypatch.delenv("GREENLIGHT_API_KEY")
    monkeypatch.setenv("GREENLIGHT_KEYS_FILE", str(keys_file))
    with pytest.raises(GreenlightError, match="does not exist: add a key with `greenlight keys add`"):
        access_environment(locations)
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    keys_file.write_text("keys: [{id: k_1, sha256: nothex, models: []}]\n")
    with pytest.raises(GreenlightError, match=str(keys_file)):
        access_environment(locations)
