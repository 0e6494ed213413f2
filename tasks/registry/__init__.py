"""Registry stage: all MLflow access (client.py) and the tracking tasks."""
