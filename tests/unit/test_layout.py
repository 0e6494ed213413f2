"""The layout rules that keep the codebase importable and its layers honest (see shared/STYLE.md)."""

import ast
from pathlib import Path

import mlflow

ROOT = Path(__file__).resolve().parents[2]
# The stages in the order imports may run: a stage imports only those to its left (and itself).
STAGE_ORDER = ("core", "data", "model", "onnx", "registry", "release", "monitoring")
STAGES = set(STAGE_ORDER)


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
    light = [ROOT / "tasks" / "onnx" / "runtime.py", ROOT / "tasks" / "onnx" / "verified.py"]
    for path in [*(ROOT / "tasks" / "core").rglob("*.py"), *light]:
        assert not {name.split(".")[0] for name in imports_of(path)} & heavy, path


def stage_of(name: str) -> str | None:
    """'tasks.model.training' -> 'model'; None for anything outside tasks/<stage>."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "tasks" and parts[1] in STAGES else None


def backward_imports(root: Path) -> list[str]:
    """Every import in tasks/<stage>/ of a stage to its right (in functions too), as 'file imports module'."""
    found = []
    for path in sorted((root / "tasks").rglob("*.py")):
        here = path.relative_to(root / "tasks").parts[0]
        for name in sorted(imports_of(path)) if here in STAGES else ():
            there = stage_of(name)
            if there is not None and STAGE_ORDER.index(there) > STAGE_ORDER.index(here):
                found.append(f"{path.relative_to(root)} imports {name}")
    return found


def test_stages_import_only_the_stages_before_them():
    assert backward_imports(ROOT) == []


def test_a_backward_import_anywhere_in_a_stage_is_named(tmp_path):
    """The check itself: one import of a later stage, even inside a function, fails it by file and module."""
    planted = tmp_path / "tasks" / "data" / "drift.py"
    planted.parent.mkdir(parents=True)
    planted.write_text("def reference():\n    from tasks.registry.client import find_version\n")
    (tmp_path / "tasks" / "model").mkdir()
    (tmp_path / "tasks" / "model" / "training.py").write_text("from tasks.data.split import split_dataset\n")
    assert backward_imports(tmp_path) == ["tasks/data/drift.py imports tasks.registry.client"]


def test_the_registry_imports_no_other_stage():
    """Stages report through tasks.core.records, so a new result never needs a registry edit."""
    for path in (ROOT / "tasks" / "registry").rglob("*.py"):
        assert {stage_of(name) for name in imports_of(path)} <= {None, "core", "registry"}, path


def test_bentos_import_only_core_the_runtime_and_the_registry_client():
    allowed = ("tasks.core", "tasks.onnx.runtime", "tasks.onnx.verified", "tasks.registry.client")
    for path in (ROOT / "bentos").rglob("*.py"):
        imported = {name for name in imports_of(path) if name.startswith("tasks")}
        assert all(name.startswith(allowed) for name in imported), (path, imported)


def test_the_flows_only_wire():
    """The pipeline reads top to bottom: short functions, no path building, no error handling of their own."""
    for path in (ROOT / "flows").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                assert node.end_lineno - node.lineno + 1 <= 40, f"{path.name}: {node.name} is over 40 lines"
            assert not isinstance(node, ast.Try), f"{path.name}:{node.lineno}: a flow handles no errors itself"
            division = isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
            assert not division, f"{path.name}:{node.lineno}: paths come from the run context, not '/' in a flow"
