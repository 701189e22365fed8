import os

import pytest


@pytest.fixture(scope="session")
def prefect_ephemeral(tmp_path_factory):
    """One real Prefect API (ephemeral server, temporary database) for all flow tests, with
    persisted results (the daily flow's cache) in a temporary folder, not the project's."""
    store = str(tmp_path_factory.mktemp("prefect-results"))
    before = os.environ.get("PREFECT_LOCAL_STORAGE_PATH")
    os.environ["PREFECT_LOCAL_STORAGE_PATH"] = store  # Dask worker processes read the environment
    import alphapulse.flows  # noqa: F401  (settings before Prefect is imported)
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    try:
        with prefect_test_harness(server_startup_timeout=120), temporary_settings({PREFECT_LOCAL_STORAGE_PATH: store}):
            yield
    finally:
        if before is None:
            os.environ.pop("PREFECT_LOCAL_STORAGE_PATH", None)
        else:
            os.environ["PREFECT_LOCAL_STORAGE_PATH"] = before
