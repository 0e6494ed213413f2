"""The layout rules that keep the codebase importable and its layers honest (see shared/STYLE.md)."""

import ast
from pathlib import Path

import mlflow

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(package: str) -> set[str]:
    names = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_installed_mlflow_is_not_shadowed_by_the_mlflow_config_folder():
    assert "site-packages" in mlflow.__file__
    assert not list((ROOT / "mlflow").rglob("*.py"))


def test_imports_run_one_way():
    assert not imported_modules("tasks") & {"flows", "bentos", "bentoml", "deployments"}
    assert not imported_modules("flows") & {"bentos", "bentoml", "deployments"}
    assert not imported_modules("bentos") & {"prefect", "flows", "deployments"}
