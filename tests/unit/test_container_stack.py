"""The container stack's settings, without podman: what the pool's containers get (folders mounted at their own
paths, once; this stack's servers; the user who started it), where the socket goes, and where the pipeline image's
build finds torch's CPU wheel."""

from pathlib import Path

from deployments.containers import LABEL, mounted_folders, pool_template, socket_path
from tasks.core.locations import resolve_locations
from tasks.release.images import PIPELINE_IMAGE, find_links, pinned_version, torch_wheelhouse


def locations_in(home: Path, **environ: str):
    return resolve_locations({"GREENLIGHT_HOME": str(home), **environ})


def test_the_home_is_mounted_once_and_a_store_outside_it_beside_it(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    inside = locations_in(home, MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}", BENTOML_HOME=str(home / "b"))
    assert mounted_folders(inside) == [str(home.resolve())]
    outside = locations_in(
        home, MLFLOW_TRACKING_URI=f"sqlite:///{elsewhere / 'db' / 'mlflow.db'}", BENTOML_HOME=str(elsewhere / "bento")
    )
    assert sorted(mounted_folders(outside)) == sorted(
        [str(home.resolve()), str((elsewhere / "bento").resolve()), str((elsewhere / "db" / "mlartifacts").resolve())]
    )
    # A tracking server keeps its own artifacts: nothing of it to mount.
    served = locations_in(home, MLFLOW_TRACKING_URI="http://127.0.0.1:5000", BENTOML_HOME=str(home / "b"))
    assert mounted_folders(served) == [str(home.resolve())]


def test_the_pools_containers_run_the_pipeline_image_against_this_stack_as_its_user(tmp_path: Path) -> None:
    import os

    locations = locations_in(tmp_path, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    template = pool_template(locations, "http://127.0.0.1:5123", PIPELINE_IMAGE)
    defaults = {name: spec.get("default") for name, spec in template["variables"]["properties"].items()}
    assert defaults["image"] == PIPELINE_IMAGE and defaults["image_pull_policy"] == "Never"
    assert defaults["network_mode"] == "host"
    assert defaults["volumes"] == [f"{tmp_path.resolve()}:{tmp_path.resolve()}"]
    assert defaults["env"]["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5123"
    assert defaults["env"]["GREENLIGHT_HOME"] == str(tmp_path.resolve())
    assert defaults["labels"] == {LABEL: str(tmp_path.resolve())}
    assert defaults["container_create_kwargs"] == {"user": f"{os.getuid()}:{os.getgid()}"}
    # The template's job configuration still maps every variable (prefect-docker's own, defaults changed only).
    assert "{{ container_create_kwargs }}" in template["job_configuration"].values()


def test_a_deep_home_gets_its_socket_in_tmp_under_a_name_of_its_own(tmp_path: Path) -> None:
    assert socket_path(tmp_path) == tmp_path / "containers" / "podman.sock"
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    assert len(str(socket_path(deep))) <= 100
    assert socket_path(deep) != socket_path(deep / "f")


def test_the_build_takes_torch_from_a_local_wheelhouse_holding_the_pinned_cpu_wheel(tmp_path: Path) -> None:
    checkout, wheels, other = tmp_path / "checkout", tmp_path / "wheels", tmp_path / "other"
    for folder in (checkout, wheels, other):
        folder.mkdir()
    (checkout / "constraints.txt").write_text("# pins\nnumpy==2.3.0\ntorch==2.13.0\n")
    assert pinned_version(checkout / "constraints.txt", "torch") == "2.13.0"
    assert pinned_version(checkout / "constraints.txt", "jax") is None
    (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    (other / "torch-2.12.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    environ = {"PIP_FIND_LINKS": f"{other} file://{wheels} https://example.org/wheels {tmp_path / 'missing'}"}
    assert find_links(environ) == [other, wheels]
    assert torch_wheelhouse(checkout, environ) == wheels
    assert torch_wheelhouse(checkout, {"PIP_FIND_LINKS": str(other)}) is None  # another version: from TORCH_INDEX


def test_without_git_the_commit_comes_from_the_images_code_version_file(tmp_path: Path, monkeypatch) -> None:
    import tasks.core.locations as locations

    monkeypatch.setattr(locations, "git", lambda *args: None)  # the pipeline image holds no .git and no git
    monkeypatch.setattr(locations, "PROJECT_ROOT", tmp_path)
    assert locations.code_version() == ("unknown", "unknown")
    (tmp_path / "CODE_VERSION").write_text("2c967322bc70b730431bc521ccb1966759650f92 no\n")
    assert locations.code_version() == ("2c967322bc70b730431bc521ccb1966759650f92", "no")
