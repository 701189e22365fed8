"""Prefect flows: thin @flow/@task wrappers over ``pipelines``. No arithmetic here.

Importing this package sets the Prefect settings this project needs before Prefect is imported:
an ephemeral server gets 120 s to start (Prefect's default of 20 s fails on a busy 2-core
machine with a fresh database), and analytics are off (these machines are offline). Values
already set in the environment win. Persisted task results (the daily flow's cache) go to
``.prefect-results/`` in the project unless ``PREFECT_LOCAL_STORAGE_PATH`` says otherwise.
"""
import os
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(Path(__file__).resolve().parents[1] / ".prefect-results"))
