"""Orchestration: configuration, I/O, validation, sample data, MLflow and the `leadscore` CLI."""
