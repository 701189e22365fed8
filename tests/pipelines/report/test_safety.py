"""Safety: YAML is only ever safe-loaded, nothing is unpickled from user paths, report file names
cannot leave the report folder and a report never replaces what is not a report.

Trust boundaries that stay (documented, not user paths): Prefect's persisted task results
(``flows/daily.py``, ``persist_result=True``) are pickled by Prefect into its own result store
(``PREFECT_LOCAL_STORAGE_PATH``, by default ``~/.prefect/storage``) and read back from there;
Dask ships pickled tasks between the scheduler and its workers. Neither reads a file a user
names on the command line or in the config.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pandas as pd
import pytest

from alphapulse.pipelines.config import ConfigError, load_config
from alphapulse.pipelines.report.write import ReportError, _safe_name, check_out_dir, write_report

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("pipelines", "transforms", "flows")

# ---------------------------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/apply:subprocess.check_call [['touch', '{marker}']]",
    "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
    "!!python/name:os.system",
    "!!python/module:os",
    "!include /etc/passwd",
])
def test_yaml_tags_that_build_objects_are_refused_and_nothing_runs(tmp_path, payload):
    marker = tmp_path / "PWNED"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text("gpu: " + payload.format(marker=marker) + "\n")
    with pytest.raises(ConfigError, match=r"evil\.yaml: not valid YAML at line 1.*could not determine a constructor"):
        load_config(cfg)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# No unpickling (and no YAML object construction) anywhere in the package
# ---------------------------------------------------------------------------------------------

FORBIDDEN = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "_pickle.load", "_pickle.loads",
    "cloudpickle.load", "cloudpickle.loads", "dill.load", "dill.loads", "joblib.load", "torch.load",
    "pandas.read_pickle", "marshal.load", "marshal.loads", "shelve.open",
    "yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load",
    "yaml.full_load_all", "skops.io.load", "skops.io.loads", "builtins.eval", "builtins.exec",
}
"""Calls that unpickle, or construct objects from YAML, or run text as code."""

ALLOWED = {
    ("transforms/kernels.py", "builtins.exec"):
        "compiles the module's own constant kernel-wrapper source; no input reaches it",
    ("pipelines/models/estimators.py", "skops.io.loads"):
        "skops, not pickle: trusted= is exactly the types get_untrusted_types reports, after any type "
        "outside SKOPS_TRUSTED has been refused",
}
"""Documented safe uses: (file, call) -> why."""


def risky_calls(source: str) -> list[tuple[str, int]]:
    """(dotted call name, line) of every forbidden call in ``source``, import aliases resolved;
    ``numpy.load`` only with ``allow_pickle`` set to anything but a literal False."""
    tree = ast.parse(source)
    alias = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                alias[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                alias[a.asname or a.name] = f"{node.module}.{a.name}"

    def dotted(f) -> str | None:
        parts = []
        while isinstance(f, ast.Attribute):
            parts.append(f.attr)
            f = f.value
        if not isinstance(f, ast.Name):
            return None
        head = alias.get(f.id, "builtins." + f.id if f.id in ("eval", "exec") and not parts else f.id)
        return ".".join([head, *reversed(parts)])

    hits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        if name in FORBIDDEN:
            hits.append((name, node.lineno))
        elif name == "numpy.load":
            kw = {k.arg: k.value for k in node.keywords}
            allow = kw.get("allow_pickle")
            if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                hits.append(("numpy.load(allow_pickle=...)", node.lineno))
    return hits


@pytest.mark.parametrize("snippet, expected", [
    ("import pickle\npickle.load(open(p, 'rb'))", "pickle.load"),
    ("import pickle as pk\npk.loads(b)", "pickle.loads"),
    ("from pickle import loads as l\nl(b)", "pickle.loads"),
    ("import numpy as np\nnp.load(p, allow_pickle=True)", "numpy.load(allow_pickle=...)"),
    ("import numpy as np\nnp.load(p, allow_pickle=flag)", "numpy.load(allow_pickle=...)"),
    ("import yaml\nyaml.load(t, Loader=yaml.Loader)", "yaml.load"),
    ("from yaml import unsafe_load\nunsafe_load(t)", "yaml.unsafe_load"),
    ("import joblib\njoblib.load(p)", "joblib.load"),
    ("import torch\ntorch.load(p)", "torch.load"),
    ("import pandas as pd\npd.read_pickle(p)", "pandas.read_pickle"),
    ("eval(text)", "builtins.eval"),
    ("import skops.io as sio\nsio.load(p, trusted=True)", "skops.io.load"),
])
def test_the_scanner_finds_each_risky_call(snippet, expected):
    assert [name for name, _ in risky_calls(snippet)] == [expected]


def test_the_scanner_lets_safe_calls_pass():
    safe = ("import numpy as np, yaml, json\nnp.load(p)\nnp.load(p, allow_pickle=False)\nyaml.safe_load(t)\n"
            "json.loads(t)\n# pickle.load(f) in a comment\ns = 'yaml.load(x)'\n")
    assert risky_calls(safe) == []


def test_no_unpickling_or_unsafe_yaml_in_the_package():
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for name, line in risky_calls(path.read_text(encoding="utf-8")):
                if (rel, name) not in ALLOWED:
                    found.append(f"{rel}:{line}: {name}")
    assert not found, "unpickling / unsafe YAML / eval in the package:\n" + "\n".join(found)


def test_the_allowed_skops_load_never_trusts_everything():
    """The one skops load passes the checked list of types, never ``trusted=True``."""
    tree = ast.parse((ROOT / "pipelines" / "models" / "estimators.py").read_text(encoding="utf-8"))
    loads = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr in ("load", "loads") and isinstance(n.func.value, ast.Name) and n.func.value.id == "sio"]
    assert loads, "pipelines/models/estimators.py no longer loads skops files: drop the ALLOWED entry"
    for call in loads:
        trusted = {k.arg: k.value for k in call.keywords}.get("trusted")
        assert trusted is not None and not isinstance(trusted, ast.Constant), ast.dump(call)


# ---------------------------------------------------------------------------------------------
# Report names and folders
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "../evil.parquet", "../../etc/cron.d/evil", "/etc/passwd", "/tmp/evil.parquet", "a/b.parquet", "..", ".",
    "", ".hidden.parquet", "evil\x00.parquet", "line\nbreak.parquet", "back\\slash.parquet", "x" * 256,
])
def test_unsafe_report_names_are_refused(name):
    with pytest.raises(ReportError, match="must be a plain name inside the report folder"):
        _safe_name(name)


@pytest.mark.parametrize("name", ["manifest.json", "summary.md", "summary.html"])
def test_a_table_cannot_overwrite_the_reports_own_files(tmp_path, name):
    with pytest.raises(ReportError, match="reserved"):
        write_report(tmp_path / "rep", tables={name: pd.DataFrame({"x": [1]})}, manifest={}, summary="")


@pytest.mark.parametrize("kind", ["tables", "files", "linked"])
@pytest.mark.parametrize("name", ["../escaped.parquet", "/tmp/escaped-abs.parquet", "sub/../../escaped.parquet"])
def test_no_report_file_lands_outside_the_folder(tmp_path, kind, name):
    out = tmp_path / "reports" / "rep"
    write_report(out, tables={"t.parquet": pd.DataFrame({"x": [1]})}, manifest={}, summary="before\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    src = tmp_path / "src.parquet"
    pd.DataFrame({"x": [2]}).to_parquet(src)
    before.append(src.relative_to(tmp_path))
    frame = pd.DataFrame({"x": [2]})
    arg = {"tables": {name: frame}, "files": {name: b"data"}, "linked": {name: src}}[kind]
    with pytest.raises(ReportError):
        write_report(out, manifest={}, summary="after\n", **({"tables": {}} | {kind: arg}))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == sorted(before)
    assert not Path("/tmp/escaped-abs.parquet").exists()
    assert (out / "summary.md").read_text() == "before\n"


def test_a_symlink_in_the_old_report_is_replaced_not_followed(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    out = tmp_path / "rep"
    write_report(out, tables={"t.parquet": pd.DataFrame({"x": [1]})}, manifest={}, summary="")
    (out / "t.parquet").unlink()
    os.symlink(precious, out / "t.parquet")
    write_report(out, tables={"t.parquet": pd.DataFrame({"x": [2]})}, manifest={}, summary="")
    assert precious.read_text() == "keep me"
    assert not (out / "t.parquet").is_symlink() and pd.read_parquet(out / "t.parquet")["x"].item() == 2


def test_a_folder_that_is_not_a_report_is_never_replaced(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(ReportError, match="not empty and is not a report"):
        write_report(home, tables={}, manifest={}, summary="")
    link = tmp_path / "link"
    os.symlink(home, link)  # nor through a symbolic link to it
    with pytest.raises(ReportError, match="not empty and is not a report"):
        check_out_dir(link)
    assert (home / "thesis.tex").read_text() == "years of work"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_out_dir(empty) == empty  # an empty folder is fine


def test_the_output_cannot_hold_or_sit_inside_the_input(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "bars.csv").write_text("x")
    with pytest.raises(ReportError, match="inside the input folder"):
        check_out_dir(data / "report", inputs=[data])
    with pytest.raises(ReportError, match="is inside it"):
        check_out_dir(data, inputs=[data])
    with pytest.raises(ReportError, match="is inside it"):
        check_out_dir(tmp_path, inputs=[data / "bars.csv"])
    with pytest.raises(ReportError, match="is inside it"):  # the same folder spelt another way
        check_out_dir(data / ".." / "data", inputs=[data])
    assert check_out_dir(tmp_path / "elsewhere", inputs=[data]) == tmp_path / "elsewhere"
