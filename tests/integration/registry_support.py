"""What the pipeline tests share: the registry and bento-store state a rejected run must not change.

Not a test module: test_pipeline.py and test_bad_data.py import it.
"""

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

MODEL = "digits-classifier"


def registry_state(client: MlflowClient, model: str = MODEL) -> tuple[list[str], str | None]:
    """The model's versions and the version `production` points at (None before the first promotion)."""
    versions = sorted(str(v.version) for v in client.search_model_versions(f"name = '{model}'"))
    try:
        production = client.get_registered_model(model).aliases.get("production")
    except MlflowException:
        production = None
    return versions, production


def bentos() -> list[str]:
    """Every bento tag in the BentoML store (BENTOML_HOME)."""
    import bentoml

    return sorted(str(b.tag) for b in bentoml.list())
