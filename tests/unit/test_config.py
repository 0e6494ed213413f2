"""RunConfig and the CLI's config loading: bad settings are refused with the field named."""

import argparse

import pytest

from deployments.cli import build_parser, load_run_config
from tasks.core.config import RunConfig
from tasks.core.errors import ConfigRejected


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", *argv])


def test_defaults_judge_against_baselines_not_absolute_numbers():
    config = RunConfig()
    assert config.gate.min_test_accuracy is None and config.gate.min_gain_over_baseline == 0.1
    assert config.compression.accuracy_budget_points == 0.5
    assert config.model_name is None and config.data_path is None  # the bundled digits, named digits-classifier


def test_command_line_overrides_reach_the_config():
    config = load_run_config(parse("--data", "x.csv", "--max-epochs", "3", "--shuffle-labels"))
    assert (config.data_path, config.training.max_epochs, config.training.shuffle_labels) == ("x.csv", 3, True)
    config = load_run_config(parse("--data", "x.csv", "--target", "churn", "--task", "regression"))
    assert (config.target, config.task) == ("churn", "regression")


SPEC = """\
data: churn.csv
model_name: churn
gate: {min_test_accuracy: 0.8}
dataset:
  name: churn
  target: {name: churn, task: classification, labels: ["no", "yes"]}
  features:
    - {name: tenure, type: numeric}
    - {name: contract, type: categorical, nullable: true, values: [monthly, yearly]}
model: {family: tabular_mlp}
"""


def test_a_spec_file_brings_its_data_name_and_settings_with_the_data_path_relative_to_it(tmp_path):
    (tmp_path / "specs").mkdir()
    path = tmp_path / "specs" / "greenlight.yaml"
    path.write_text(SPEC)
    config = load_run_config(parse("--spec", str(path)))
    assert config.spec_path == str(path) and config.model_name == "churn"
    assert config.data_path == str(tmp_path / "specs" / "churn.csv")
    assert config.gate.min_test_accuracy == 0.8
    assert load_run_config(parse("--spec", str(path), "--model-name", "other")).model_name == "other"


@pytest.mark.parametrize(
    "edit, field",
    [
        (("type: numeric", "type: numerc"), "dataset.features.0.type"),
        (("nullable: true", "nulable: true"), "nulable"),
        (('labels: ["no", "yes"]', "labels: [yes]"), "at least 2 labels"),
        (("family: tabular_mlp", "family: custom"), "custom"),
    ],
)
def test_a_bad_spec_file_is_refused_naming_the_field_and_the_file(tmp_path, edit, field):
    path = tmp_path / "greenlight.yaml"
    path.write_text(SPEC.replace(*edit))
    with pytest.raises(ConfigRejected) as rejected:
        load_run_config(parse("--spec", str(path)))
    assert field in str(rejected.value) and str(path) in str(rejected.value)


def test_yaml_config_file_is_read(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("training:\n  learning_rate: 0.01\ngate:\n  min_test_accuracy: 0.9\n")
    config = load_run_config(parse("--config", str(path)))
    assert config.training.learning_rate == 0.01 and config.gate.min_test_accuracy == 0.9


@pytest.mark.parametrize(
    "text, field",
    [
        ("training:\n  learnig_rate: 0.01\n", "training.learnig_rate"),
        ("gate:\n  min_test_accuracy: 1.5\n", "gate.min_test_accuracy"),
        ("training:\n  max_epochs: many\n", "training.max_epochs"),
        ("model_name: 'has spaces'\n", "model_name"),
        # Settings that parse but cannot mean anything: refused before a run starts, not found as a NaN loss.
        ("training:\n  weight_decay: .inf\n", "training.weight_decay"),
        ("training:\n  learning_rate: .nan\n", "training.learning_rate"),
        ("training:\n  max_epochs: true\n", "training.max_epochs"),
        ("gate:\n  max_model_size_bytes: yes\n", "gate.max_model_size_bytes"),
    ],
)
def test_bad_config_is_rejected_naming_the_field(tmp_path, text, field):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigRejected) as rejected:
        load_run_config(parse("--config", str(path)))
    assert field in str(rejected.value) and str(path) in str(rejected.value)


def test_a_target_without_data_is_refused_before_any_run_starts():
    with pytest.raises(ConfigRejected, match="target needs data_path"):
        load_run_config(parse("--target", "churn"))


@pytest.mark.parametrize("text", ["[1, 2", "- just\n- a list\n"])
def test_unparseable_or_non_mapping_config_is_rejected(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigRejected, match=str(path)):
        load_run_config(parse("--config", str(path)))


def test_missing_config_file_is_rejected(tmp_path):
    with pytest.raises(ConfigRejected, match="could not be read"):
        load_run_config(parse("--config", str(tmp_path / "nope.yaml")))
