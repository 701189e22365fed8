#!/usr/bin/env bash
# The GPU check, as ONE command on the offline GPU host (docs/gpu.md has the calls and their times).
#
#   bash scripts/gpu_check.sh               level 1: CuPy + numba-cuda (carry .gpu, made by scripts/gpu_wheels.sh)
#   bash scripts/gpu_check.sh --level 2     level 2: cuDF + dask-cuda, from the 7 parts already copied to $PARTS
#   bash scripts/gpu_check.sh --rehearse [--level 1|2]   the same on a CPU machine (CI): GPU parts "skipped: no GPU"
#
# Results: $OUT/gpu-check.md and $OUT/gpu-check.json (OUT defaults to out/gpu-check), rewritten after each phase,
# so a run stopped by its time limit still returns what it finished.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
LEVEL=1; REHEARSE=0; BUDGET=${BUDGET:-420}
while [ $# -gt 0 ]; do
  case "$1" in
    --rehearse) REHEARSE=1 ;;
    --level) LEVEL=${2:?--level needs 1 or 2}; shift ;;
    --budget) BUDGET=${2:?--budget needs seconds}; shift ;;
    *) echo "gpu_check.sh: unknown argument $1 (expected --rehearse, --level 1|2, --budget SECONDS)" >&2; exit 2 ;;
  esac
  shift
done
case "$LEVEL" in 1|2) ;; *) echo "gpu_check.sh: --level must be 1 or 2" >&2; exit 2 ;; esac
OUT=${OUT:-$ROOT/out/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg
unset NUMBA_ENABLE_CUDASIM  # the simulator only where a test asks for it, in its own subprocess
SITE=/tmp/alphapulse-site
GPU_DIR=$ROOT/.gpu

if [ "$REHEARSE" = 1 ]; then
  PY=${PYTHON:-$ROOT/.venv/bin/python}
  [ -x "$PY" ] || PY=python3
else
  PY=${PYTHON:-python3}
  t0=$(date +%s)
  if [ "$LEVEL" = 2 ]; then
    # RAPIDS installs in place (cuML breaks under --target); its set pins numpy 2.4 / pandas 3.0.
    PARTS=${PARTS:-/tmp/ap-parts}
    ls "$PARTS"/part.* >/dev/null 2>&1 || { echo "gpu_check.sh: no parts in $PARTS (copy .whl/p00..p06 there first)" >&2; exit 2; }
    rm -rf /tmp/ap-wheels && mkdir -p /tmp/ap-wheels &&
      cat "$PARTS"/part.* | tar -xf - -C /tmp/ap-wheels && (cd /tmp/ap-wheels && sha256sum -c --quiet SHA256SUMS) &&
      "$PY" -m pip install -q --no-index --no-deps --no-compile /tmp/ap-wheels/*.whl "$GPU_DIR"/wheels/*.whl ||
      { echo "gpu_check.sh: level-2 install failed" >&2; exit 1; }
    export PYTHONPATH=$ROOT
  else
    [ -d "$GPU_DIR/wheels" ] || { echo "gpu_check.sh: $GPU_DIR/wheels missing: run scripts/gpu_wheels.sh here and carry .gpu" >&2; exit 2; }
    rm -rf "$SITE" && "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$GPU_DIR"/wheels/*.whl ||
      { echo "gpu_check.sh: level-1 install failed" >&2; exit 1; }
    export PYTHONPATH=$SITE:$ROOT
    # numba-cuda on the host's NumPy is what the shared README asks us to run on; if it cannot even
    # launch a kernel there, the project's own pins (numpy/pandas, carried in .gpu/pins) take over.
    probe='import numpy as np; from numba import cuda; f = cuda.jit(lambda a: None); f[1, 1](cuda.to_device(np.ones(2)))'
    if ! "$PY" -c "$probe" >"$OUT/probe.log" 2>&1; then
      echo "numba-cuda probe failed on the host's NumPy; installing the project's pins" | tee -a "$OUT/probe.log"
      "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" --upgrade "$GPU_DIR"/pins/*.whl ||
        { echo "gpu_check.sh: pins install failed" >&2; exit 1; }
    fi
  fi
  echo "installed in $(( $(date +%s) - t0 )) s"
  [ -f "$GPU_DIR/data/all_stocks_5yr.csv.gz" ] && export ALPHAPULSE_SP500_CSV=$GPU_DIR/data/all_stocks_5yr.csv.gz
  [ -f "$GPU_DIR/data/ftse100_dataset.csv.gz" ] && export ALPHAPULSE_FTSE100_CSV=$GPU_DIR/data/ftse100_dataset.csv.gz
fi

ARGS=(--out "$OUT" --level "$LEVEL" --budget-s "$BUDGET")
[ "$REHEARSE" = 1 ] && ARGS+=(--rehearse)
"$PY" "$ROOT/scripts/gpu_check.py" "${ARGS[@]}"
