"""Prefect flows: thin @flow/@task wrappers over ``pipelines``. No arithmetic here.

Importing this package sets the Prefect settings this project needs before Prefect is imported:
an ephemeral server gets 120 s to start (Prefect's default of 20 s fails on a busy 2-core
machine with a fresh database), and analytics are off (these machines are offline). Values
already set in the environment win. Persisted task results (the flows' cache) go to
``$ALPHAPULSE_CACHE_DIR/prefect-results`` (default ``~/.cache/alphapulse/prefect-results``, the
folder the routing cache uses) unless ``PREFECT_LOCAL_STORAGE_PATH`` says otherwise: an installed
package has no project folder to put them in.
"""
import os
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
_cache = Path(os.environ.get("ALPHAPULSE_CACHE_DIR") or Path.home() / ".cache" / "alphapulse").expanduser()
os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(_cache / "prefect-results"))
