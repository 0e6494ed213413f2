"""The layout rules that keep the codebase importable and its layers honest (see shared/STYLE.md)."""

import ast
from pathlib import Path

import mlflow

ROOT = Path(__file__).resolve().parents[2]
STAGES = {"core", "data", "model", "onnx", "registry", "release"}


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, as written (tasks.core.spec, mlflow.exceptions, ...)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def imported_roots(package: str) -> set[str]:
    return {name.split(".")[0] for path in (ROOT / package).rglob("*.py") for name in imports_of(path)}


def modules_importing(library: str, *packages: str) -> set[str]:
    """Files under packages that import library (or a submodule of it), relative to the root."""
    found = set()
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            if any(name == library or name.startswith(library + ".") for name in imports_of(path)):
                found.add(str(path.relative_to(ROOT)))
    return found


def test_installed_mlflow_is_not_shadowed_by_the_mlflow_config_folder():
    assert "site-packages" in mlflow.__file__
    assert not list((ROOT / "mlflow").rglob("*.py"))


def test_imports_run_one_way():
    assert not imported_roots("tasks") & {"flows", "bentos", "bentoml", "deployments"}
    assert not imported_roots("flows") & {"bentos", "bentoml", "deployments"}
    assert not imported_roots("bentos") & {"prefect", "flows", "deployments"}


def test_tasks_are_grouped_by_stage():
    assert {p.name for p in (ROOT / "tasks").iterdir() if p.is_dir() and p.name != "__pycache__"} == STAGES
    assert [p.name for p in (ROOT / "tasks").glob("*.py")] == ["__init__.py"]


def test_one_module_per_library():
    assert modules_importing("mlflow", "tasks", "flows") == {"tasks/registry/client.py"}
    assert modules_importing("onnxruntime", "tasks", "bentos", "flows") <= {
        "tasks/onnx/runtime.py",
        "tasks/onnx/compress.py",
    }
    assert modules_importing("bentoml", "tasks", "flows", "deployments") == set()


def test_core_and_runtime_stay_light_for_the_service():
    """bentos import tasks.core and the ONNX runtime: neither may pull in Prefect or torch."""
    heavy = {"prefect", "torch"}
    for path in [*(ROOT / "tasks" / "core").glob("*.py"), ROOT / "tasks" / "onnx" / "runtime.py"]:
        assert not {name.split(".")[0] for name in imports_of(path)} & heavy, path
    bentos_tasks = {
        name for path in (ROOT / "bentos").rglob("*.py") for name in imports_of(path) if name.startswith("tasks.")
    }
    assert {name.split(".")[1] for name in bentos_tasks} <= {"core", "onnx", "registry"}
