"""Entry points: the `greenlight` CLI and the Prefect deployment definitions (prefect.yaml)."""
