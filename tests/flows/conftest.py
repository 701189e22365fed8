import pytest


@pytest.fixture(scope="session")
def prefect_ephemeral():
    """One real Prefect API (ephemeral server, temporary database) for all flow tests."""
    import flows  # noqa: F401  (settings before Prefect is imported)
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
