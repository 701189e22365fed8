"""Helpers of the cluster, fault and idempotence flow tests: inputs, configs, isolated result
storage, and reading a report's files and a flow run's task runs back."""
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sp500_sample.parquet"


def split_by_symbol(folder: Path, n_files: int = 2) -> Path:
    """The sample as ``n_files`` parquet files of whole symbols (f0.parquet, ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    df = pd.read_parquet(SAMPLE)
    names = sorted(df["Name"].unique())
    step = -(-len(names) // n_files)
    for k in range(n_files):
        df[df["Name"].isin(names[k * step:(k + 1) * step])].to_parquet(folder / f"f{k}.parquet", index=False)
    return folder


def config_file(path: Path, **data) -> str:
    """The shipped config with ``data`` keys replaced, written as YAML; returns its path."""
    from alphapulse.pipelines.config import default_config_text

    raw = yaml.safe_load(default_config_text())
    raw["data"].update(data)
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@contextmanager
def result_storage(path: Path):
    """Prefect's persisted results (and the daily flow's part files) under ``path``."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: str(path)}):
        yield


def report_bytes(out: Path) -> dict[str, bytes]:
    """Every parquet file of a report folder (relative name -> bytes)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(Path(out).rglob("*.parquet"))}


def task_runs(flow_run_id) -> list:
    """The task runs of a flow run and of its sub-flow runs, sorted by name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:
        ids = [flow_run_id] + [r.id for r in client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))]
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
    return sorted(runs, key=lambda r: r.name)


def partition_states(flow_run_id) -> dict[str, str]:
    return {r.name: r.state.name for r in task_runs(flow_run_id) if r.name.startswith("partition-")}
