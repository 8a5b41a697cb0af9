"""Prefect ``@flow`` orchestration only: fan out, collect, checkpoint, pause, summarise."""
