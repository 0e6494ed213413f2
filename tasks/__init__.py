"""Greenlight pipeline stages: typed, side-effect-explicit Prefect tasks."""
