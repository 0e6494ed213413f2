"""The spec, run configuration, errors and locations: no Prefect, no torch (bentos import it)."""
