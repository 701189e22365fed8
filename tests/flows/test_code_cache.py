"""An upgrade never serves results of the old code: the real daily flow on a copy of the source
tree is 'Cached' on a re-run of unchanged code and recomputes after a deep module of its import
closure (``transforms/kernels.py``) changes. Each run is a fresh interpreter on the copy (as after
an upgrade), talking to the tests' ephemeral Prefect server with one result store."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.flows.scale_testlib import SAMPLE, config_file, partition_states

ROOT = Path(__file__).resolve().parents[2]

_RUN = """
    import json
    import alphapulse
    from alphapulse.flows.daily import daily_flow
    state = daily_flow(data_path={data!r}, out_dir={out!r}, config_path={config!r}, backend="cpu", cluster=None,
                       return_state=True)
    assert state.is_completed(), state.message
    print(json.dumps({{"file": alphapulse.__file__, "flow_run": str(state.state_details.flow_run_id)}}))
"""


@pytest.mark.slow
def test_daily_flow_recomputes_after_a_code_change(prefect_ephemeral, tmp_path):
    from prefect.settings import PREFECT_API_URL

    tree = tmp_path / "tree"
    for name in ("alphapulse", "transforms", "pipelines", "flows"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    config = config_file(tmp_path / "cfg.yaml", columns={"timestamp": "date", "symbol": "Name"})
    env = {**os.environ, "PYTHONPATH": str(tree), "PREFECT_API_URL": str(PREFECT_API_URL.value()),
           "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "store")}

    def run(name) -> dict[str, str]:
        script = textwrap.dedent(_RUN).format(data=str(SAMPLE), out=str(tmp_path / name), config=config)
        done = subprocess.run([sys.executable, "-c", script], cwd=tree, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
        assert out["file"] == str(tree / "alphapulse" / "__init__.py")
        return partition_states(out["flow_run"])

    first = run("a")
    assert first and set(first.values()) == {"Completed"}
    assert set(run("b").values()) == {"Cached"}  # unchanged code, config and input
    with open(tree / "transforms" / "kernels.py", "a") as f:
        f.write("\n\ndef _harmless_addition():\n    return None\n")
    assert set(run("c").values()) == {"Completed"}  # the upgrade's code, not the old results
