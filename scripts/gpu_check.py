"""The GPU check: what ``scripts/gpu_check.sh`` runs once its packages are in place.

    python scripts/gpu_check.py --out DIR [--level 1|2] [--rehearse] [--budget-s SECONDS]

Level 1 (CuPy + numba-cuda, nothing of RAPIDS), in this order, so that a run stopped by its time
limit has done the most valuable parts first:

1. ``environment``: Python, NumPy, pandas, CuPy, Numba, numba-cuda; NVML's device, driver and
   CUDA version; the device's compute capability and memory.
2. ``transform_tests``: ``pytest -m gpu tests/transforms``: the CuPy case of every transform
   test (the ``xp`` fixture of ``tests/conftest.py``); the NumPy cases run in CI already. The
   rehearsal runs these cases on the CuPy stand-in (``-p tests.cupy_standin.plugin``: CuPy's
   refusals and silent failures, on the CPU; it is not CuPy), and any failure fails it; the real
   run never loads the stand-in.
3. ``cuda_kernels``: the tests that compile the CUDA kernels (PTX for sm_90, float32 and float64,
   no float32 arithmetic); in the rehearsal the CUDA-simulator runs of the same kernels.
4. ``benchmarks``: ``benchmarks/device.py`` at device sizes (``--quick`` in the rehearsal),
   GPU against the CPU path on the same host, with GB/s against the measured copy bandwidth.
5. ``routing``: ``alphapulse.pipelines.gpu.bench.run_benchmark`` for each operation at its default sizes:
   the crossover sizes that routing would store.

Level 2 (cuDF, dask-cuda; installed by the shell script from the 7 parts): the GPU-marked tests
of ``tests/pipelines``, then the daily, backtest (``--cluster cuda``) and portfolio pipelines on
the bundled sample, each on ``--backend cpu`` and ``--backend gpu``, compared with
``scripts/compare_reports.py``.

``--rehearse`` (CI, no GPU): the same phases and code paths; whatever needs a device is reported
as "skipped: no GPU". The rehearsal fails (exit 1) when a phase breaks (a test module that does
not import, a benchmark that raises, a pipeline that fails); a real run fails when any test fails
or a GPU result disagrees with the CPU's.

Results go to ``DIR/gpu-check.json`` and ``DIR/gpu-check.md``, rewritten after every phase, with
each phase's log beside them.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sp500_sample.parquet"
PHASE_CAPS_L1 = {"transform_tests": 240, "cuda_kernels": 90, "benchmarks": 240, "routing": 90}
PHASE_CAPS_L2 = {"pipeline_tests": 240, "pipelines": 300}
# The rehearsal's transform tests run their CuPy cases on this CPU stand-in for CuPy (never on a GPU host).
STANDIN_PLUGIN = "tests.cupy_standin.plugin"
STANDIN_HEADER = "CuPy stand-in on the CPU (not CuPy)"


def version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


class Check:
    def __init__(self, out: Path, level: int, rehearse: bool, budget_s: float):
        self.out, self.level, self.rehearse = out, level, rehearse
        self.deadline = time.monotonic() + budget_s
        self.started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self.record: dict = {"level": level, "rehearsal": rehearse, "started": self.started, "phases": {}}
        self.broken: list[str] = []
        out.mkdir(parents=True, exist_ok=True)

    # -- bookkeeping ----------------------------------------------------------------------------

    def left(self, cap: float) -> float:
        return max(5.0, min(cap, self.deadline - time.monotonic()))

    def phase(self, name: str, result: dict) -> None:
        self.record["phases"][name] = result
        if result.get("status") in ("error", "failed", "timed out"):
            self.broken.append(name)
        self.save()

    def save(self) -> None:
        self.record["broken"] = self.broken
        self.record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        (self.out / "gpu-check.json").write_text(json.dumps(self.record, indent=1, default=str))
        (self.out / "gpu-check.md").write_text(markdown(self.record))

    def run(self, name: str, cmd: list[str], cap: float, env: dict | None = None) -> dict:
        """Run ``cmd`` with a time limit; its output to ``DIR/<name>.log``."""
        timeout = self.left(cap)
        log = self.out / f"{name}.log"
        t0 = time.monotonic()
        with log.open("w") as fh:
            try:
                proc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout,
                                      env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                rc = None
        return {"rc": rc, "seconds": round(time.monotonic() - t0, 1), "timeout_s": round(timeout),
                "log": log.name, "tail": log.read_text(errors="replace").splitlines()[-15:]}

    # -- phases ---------------------------------------------------------------------------------

    def environment(self) -> dict:
        env = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
               "packages": {n: version(n) for n in ("numpy", "pandas", "pyarrow", "numba", "numba-cuda", "cupy-cuda13x",
                                                    "cupy-cuda12x", "scikit-learn", "scipy", "pydantic", "ta-lib",
                                                    "cudf-cu13", "dask-cuda", "dask", "distributed", "cuml-cu13")}}
        try:
            from alphapulse.pipelines.gpu.status import gpu_status

            env["nvml"] = gpu_status()
        except Exception as e:  # the check reports, it does not stop
            env["nvml"] = {"error": f"{type(e).__name__}: {e}"}
        try:
            import cupy

            if cupy.is_available():
                dev = cupy.cuda.Device()
                props = cupy.cuda.runtime.getDeviceProperties(dev.id)
                free, total = cupy.cuda.runtime.memGetInfo()
                name = props["name"]
                env["device"] = {"name": name.decode() if isinstance(name, bytes) else str(name),
                                 "compute_capability": dev.compute_capability,
                                 "memory_total_gib": round(total / 2**30, 1), "memory_free_gib": round(free / 2**30, 1),
                                 "driver": cupy.cuda.runtime.driverGetVersion(),
                                 "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion()}
            else:
                env["device"] = None
                env["device_note"] = "cupy.is_available() is False"
        except Exception as e:
            env["device"] = None
            env["device_note"] = f"CuPy: {type(e).__name__}: {e}"
        if env["device"] is None and not self.rehearse:
            return {"status": "error", **env}
        return {"status": "ok" if env["device"] else "skipped: no GPU", **env}

    def pytest(self, name: str, args: list[str], cap: float, env: dict | None = None) -> dict:
        junit = self.out / f"{name}.xml"
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-rfEs", "-v",
               f"--junitxml={junit}", *args]
        if not self.rehearse and importlib.util.find_spec("xdist"):
            cmd += ["-n", "8"]  # NVRTC / NVVM compiles dominate a cold host: spread them over its cores
        if importlib.util.find_spec("pytest_timeout"):
            cmd += ["--timeout", "180"]
        res = self.run(name, cmd, cap, env)
        counts, failures = junit_counts(junit) if junit.exists() else log_counts(self.out / res["log"])
        res.update(counts=counts, failures=failures[:40])
        if STANDIN_PLUGIN in args:
            res["stand_in"] = True
        if res["rc"] is None:
            res["status"] = "timed out"
        elif counts.get("errors") or counts.get("failed"):
            res["status"] = "failed"
        elif res["rc"] != 0:  # 5: nothing selected, which is a broken selection too
            res["status"] = "error"
        elif res.get("stand_in"):
            # the header proves the stand-in was loaded: without it every CuPy case would skip
            loaded = STANDIN_HEADER in (self.out / res["log"]).read_text(errors="replace")
            res["status"] = "ok (CuPy stand-in)" if loaded and counts.get("passed", 0) else "error"
        elif self.rehearse and counts.get("passed", 0) == 0:
            res["status"] = "skipped: no GPU"
        else:
            res["status"] = "ok"
        return res

    def benchmarks(self) -> dict:
        table = self.out / "benchmarks.json"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "device.py"), "--out", str(table)]
        if self.rehearse:
            cmd.append("--quick")
        res = self.run("benchmarks", cmd, PHASE_CAPS_L1["benchmarks"])
        rows = json.loads(table.read_text())["rows"] if table.exists() else []
        res["rows"] = rows
        errors = [r for r in rows if r.get("error") or r.get("agree") is False]
        res["status"] = ("timed out" if res["rc"] is None else "failed" if errors or res["rc"] != 0
                         else "ok" if not self.rehearse else "ok (CPU side only)")
        return res

    def routing(self) -> dict:
        from alphapulse.pipelines.gpu.bench import OPERATIONS, default_sizes, run_benchmark

        t0 = time.monotonic()
        rows, errors = [], []
        for op in OPERATIONS:
            if time.monotonic() - t0 > self.left(PHASE_CAPS_L1["routing"]):
                errors.append(f"{op}: not run, out of time")
                continue
            sizes = default_sizes(op)[:1] if self.rehearse else default_sizes(op)
            try:
                frame = run_benchmark(op, sizes, repeats=1 if self.rehearse else 3)
                rows += json.loads(frame.to_json(orient="records"))
            except Exception as e:
                errors.append(f"{op}: {type(e).__name__}: {e}")
        disagree = [r for r in rows if r.get("agree") is False or r.get("cpu_check") is False]
        status = "failed" if errors or disagree else "ok" if not self.rehearse else "ok (CPU side only)"
        return {"status": status, "seconds": round(time.monotonic() - t0, 1), "rows": rows, "errors": errors}

    def pipelines(self) -> dict:
        """Level 2: each pipeline on the CPU and on the GPU, the two report folders compared."""
        work = Path(os.environ.get("ALPHAPULSE_GPU_CHECK_WORK", "/tmp/alphapulse-gpu-check"))
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        cli = [sys.executable, "-c",
               "import sys; from alphapulse.flows.cli.dispatch import main; sys.exit(main(sys.argv[1:]))"]
        runs = {"daily": ["daily"], "backtest": ["backtest", "--strategy", "sma_cross"], "portfolio": ["portfolio"]}
        out, t0 = {}, time.monotonic()
        for name, args in runs.items():
            entry = {}
            for backend in ("cpu", "gpu"):
                extra = ["--cluster", "cuda"] if name == "backtest" and backend == "gpu" else []
                cmd = cli + args + ["--data", str(SAMPLE), "--out", str(work / f"{name}-{backend}"),
                                    "--backend", backend, "--no-prefect", *extra]
                if self.rehearse and backend == "gpu":
                    entry[backend] = {"status": "skipped: no GPU"}
                    continue
                res = self.run(f"{name}-{backend}", cmd, PHASE_CAPS_L2["pipelines"] - (time.monotonic() - t0))
                res["status"] = "ok" if res["rc"] == 0 else "timed out" if res["rc"] is None else "failed"
                entry[backend] = res
            a, b = work / f"{name}-cpu", work / f"{name}-gpu"
            if self.rehearse:
                b = a  # the comparison's code path, on the one report there is
            if entry["cpu"]["status"] == "ok" and (self.rehearse or entry["gpu"]["status"] == "ok"):
                cmp = self.run(f"{name}-compare", [sys.executable, str(ROOT / "scripts" / "compare_reports.py"),
                                                   str(a), str(b)], 60)
                entry["compare"] = {"rc": cmp["rc"], "lines": cmp["tail"]}
            out[name] = entry
        failed = [n for n, e in out.items()
                  if e["cpu"]["status"] != "ok" or (not self.rehearse and e["gpu"]["status"] != "ok")
                  or e.get("compare", {}).get("rc") != 0]
        return {"status": "failed" if failed else "ok", "failed": failed, "runs": out,
                "seconds": round(time.monotonic() - t0, 1)}

    def level1(self) -> None:
        self.phase("environment", self.environment())
        standin = ["-p", STANDIN_PLUGIN] if self.rehearse else []
        self.phase("transform_tests", self.pytest("transform_tests", [*standin, "-m", "gpu", "tests/transforms"],
                                                  PHASE_CAPS_L1["transform_tests"]))
        # On the device the PTX tests compile every kernel for sm_90; under the simulator (rehearsal)
        # the same kernels run as CUDA kernels on the CPU.
        selection = "simulator or ptx" if self.rehearse else "ptx"
        self.phase("cuda_kernels", self.pytest("cuda_kernels", ["-k", selection, "tests/transforms"],
                                               PHASE_CAPS_L1["cuda_kernels"]))
        self.phase("benchmarks", self.benchmarks())
        self.phase("routing", self.routing())

    def level2(self) -> None:
        self.phase("environment", self.environment())
        # Only the modules that hold GPU cases: the others import the HTTP and Prefect stacks,
        # which the GPU host does not have and which have no GPU path.
        files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "pipelines").glob("test_*.py")
                       if "pytest.mark.gpu" in p.read_text())
        self.phase("pipeline_tests", self.pytest("pipeline_tests", ["-m", "gpu", *files],
                                                 PHASE_CAPS_L2["pipeline_tests"]))
        self.phase("pipelines", self.pipelines())


# -- reading pytest's results -------------------------------------------------------------------


def junit_counts(path: Path) -> tuple[dict, list[str]]:
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures = []
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        return {"unreadable": str(e)}, []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        kinds = {child.tag for child in case}
        if "failure" in kinds or "error" in kinds:
            tag = "failure" if "failure" in kinds else "error"
            counts["failed" if tag == "failure" else "errors"] += 1
            node = case.find(tag)
            message = (node.get("message") or node.text or "").strip().splitlines()
            failures.append(f"{name}: {message[0][:240] if message else tag}")
        elif "skipped" in kinds:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts, failures


def log_counts(log: Path) -> tuple[dict, list[str]]:
    """Counts from ``pytest -v`` lines when no JUnit file was written (a run stopped by its limit)."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures = []
    for line in log.read_text(errors="replace").splitlines():
        for word, key in (("PASSED", "passed"), ("FAILED", "failed"), ("ERROR", "errors"), ("SKIPPED", "skipped")):
            if f" {word}" in line and "::" in line:
                counts[key] += 1
                if key in ("failed", "errors"):
                    failures.append(line.strip()[:240])
                break
    counts["partial"] = True
    return counts, failures


# -- the report for people ----------------------------------------------------------------------


def _fmt(v, spec: str = ".3g") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def markdown(rec: dict) -> str:
    p = rec["phases"]
    title = "GPU check" + (" (rehearsal, no GPU)" if rec["rehearsal"] else "")
    lines = [f"# {title}, level {rec['level']}", "", f"Started {rec['started']}, finished {rec.get('finished')}.",
             f"Broken phases: {', '.join(rec['broken']) or 'none'}.", ""]
    env = p.get("environment")
    if env:
        dev = env.get("device") or {}
        pk = env.get("packages", {})
        lines += ["## Environment", "",
                  f"- device: {dev.get('name', env.get('device_note'))}, compute capability "
                  f"{dev.get('compute_capability', '-')}, {dev.get('memory_total_gib', '-')} GiB",
                  f"- driver {dev.get('driver', '-')}, CUDA runtime {dev.get('cuda_runtime', '-')}; NVML: "
                  f"{(env.get('nvml') or {}).get('driver_version', (env.get('nvml') or {}).get('reason', '-'))}",
                  f"- Python {env['python']}, {env['cpus']} CPUs; " + ", ".join(f"{k} {v}" for k, v in pk.items() if v),
                  ""]
    for name in ("transform_tests", "cuda_kernels", "pipeline_tests"):
        r = p.get(name)
        if not r:
            continue
        c = r.get("counts", {})
        where = " on the CuPy stand-in (CPU)" if r.get("stand_in") else ""
        lines += [f"## {name.replace('_', ' ').capitalize()}: {r['status']}", "",
                  f"{c.get('passed', 0)} passed{where}, {c.get('failed', 0)} failed, {c.get('errors', 0)} errors, "
                  f"{c.get('skipped', 0)} skipped in {r['seconds']} s (limit {r['timeout_s']} s; log {r['log']})", ""]
        lines += [f"- {f}" for f in r.get("failures", [])]
        lines.append("")
    b = p.get("benchmarks")
    if b:
        lines += [f"## Benchmarks: {b['status']}", "",
                  "| case | dtype | shape | CPU s | GPU s | speedup | GB/s | of ceiling | GPU throughput"
                  " | agree | note |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in b["rows"]:
            note = r.get("error") or r.get("gpu_note") or r.get("cpu_note") or ""
            thr = f"{r['throughput']:.3g} {r.get('unit')}" if r.get("throughput") else "-"
            lines.append(f"| {r['case']} | {r.get('dtype', '-')} | {r.get('shape', '-')} | {_fmt(r.get('cpu_s'))} | "
                         f"{_fmt(r.get('gpu_s'))} | {_fmt(r.get('speedup'))} | {_fmt(r.get('gpu_gbps'), '.0f')} | "
                         f"{_fmt(r.get('fraction_of_ceiling'), '.0%')} | {thr} | {_fmt(r.get('agree'))} | {note} |")
        lines.append("")
    rt = p.get("routing")
    if rt:
        lines += [f"## Routing sizes: {rt['status']}", "",
                  "| operation | size | CPU s | GPU s | speedup | agree | crossover |",
                  "|---|---|---|---|---|---|---|"]
        for r in rt["rows"]:
            lines.append(f"| {r['operation']} | {r['size']} | {_fmt(r.get('cpu_time'))} | {_fmt(r.get('gpu_time'))} | "
                         f"{_fmt(r.get('speedup'))} | {_fmt(r.get('agree'))} | {_fmt(r.get('crossover_size'))} |")
        lines += [f"- {e}" for e in rt.get("errors", [])] + [""]
    pl = p.get("pipelines")
    if pl:
        lines += [f"## Pipelines, CPU against GPU: {pl['status']}", ""]
        for name, e in pl["runs"].items():
            cmp = e.get("compare", {})
            lines.append(f"- {name}: cpu {e['cpu']['status']} ({e['cpu'].get('seconds', '-')} s), gpu "
                         f"{e['gpu']['status']} ({e['gpu'].get('seconds', '-')} s); compare rc {cmp.get('rc', '-')}: "
                         f"{' / '.join(cmp.get('lines', [])[-3:])}")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--level", type=int, choices=(1, 2), default=1)
    ap.add_argument("--rehearse", action="store_true")
    ap.add_argument("--budget-s", type=float, default=420.0)
    args = ap.parse_args(argv)
    if not 30 <= args.budget_s <= 3600:
        ap.error("--budget-s must be from 30 to 3600")
    check = Check(args.out, args.level, args.rehearse, args.budget_s)
    (check.level1 if args.level == 1 else check.level2)()
    check.save()
    print((args.out / "gpu-check.md").read_text())
    return 1 if check.broken else 0


if __name__ == "__main__":
    sys.exit(main())
