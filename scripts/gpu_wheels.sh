#!/usr/bin/env bash
# Packs what level 1 of the GPU check needs on the offline GPU host into .gpu/ (git-ignored, carried
# by the device call): the few wheels the host lacks, the project's numpy/pandas pins (used only if
# the host's NumPy cannot run numba-cuda) and the real data the tests read from ../shared.
#
#   bash scripts/gpu_wheels.sh          download (Python 3.12, manylinux x86_64) into .gpu/
#   bash scripts/gpu_wheels.sh --list   print what it would fetch (the CI rehearsal checks this)
#
# Versions are this checkout's venv's (.venv), so the GPU host tests what CI tests.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-$ROOT/.venv/bin/python}
# the host has numpy, pandas, pyarrow, numba(-cuda), CuPy, scikit-learn, scipy, pytest, hypothesis, pyyaml,
# psutil, nvidia-ml-py and matplotlib; the transforms' tests and benchmarks need these besides:
WHEELS="pydantic pydantic-core annotated-types typing-inspection typing-extensions ta-lib"
PINS="numpy pandas"
LIMIT_MIB=60

spec() {  # name==version as installed in the venv
  "$PY" - "$1" <<'PYEOF'
import sys
from importlib import metadata
name = sys.argv[1]
try:
    print(f"{name}=={metadata.version(name)}")
except metadata.PackageNotFoundError:
    sys.exit(f"gpu_wheels.sh: {name} is not installed in the venv (run make install first)")
PYEOF
}

if [ "${1:-}" = "--list" ]; then
  for n in $WHEELS; do echo "wheel $(spec "$n")"; done
  for n in $PINS; do echo "pin   $(spec "$n")"; done
  echo "data  ../shared/data/sp500_5yr/all_stocks_5yr.csv.gz ../shared/data/ftse100/ftse100_dataset.csv.gz"
  exit 0
fi

plat=""
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  plat="$plat --platform $p"
done
fetch() {  # fetch DEST SPEC
  local before; before=$(ls "$1" | wc -l)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat -d "$1" "$2" \
    2>&1 | grep -v "is ignored: it is neither" || true
  [ "$(ls "$1" | wc -l)" -gt "$before" ] || { echo "gpu_wheels.sh: could not download $2" >&2; exit 1; }
}
rm -rf .gpu && mkdir -p .gpu/wheels .gpu/pins .gpu/data
for n in $WHEELS; do fetch .gpu/wheels "$(spec "$n")"; done
for n in $PINS; do fetch .gpu/pins "$(spec "$n")"; done
cp ../shared/data/sp500_5yr/all_stocks_5yr.csv.gz ../shared/data/ftse100/ftse100_dataset.csv.gz .gpu/data/
size=$(du -sm .gpu | cut -f1)
ls -la .gpu/wheels .gpu/pins .gpu/data
echo ".gpu: ${size} MiB (limit ${LIMIT_MIB} MiB with the project tree under 64 MiB a call)"
[ "$size" -le "$LIMIT_MIB" ] || { echo "gpu_wheels.sh: .gpu is over ${LIMIT_MIB} MiB" >&2; exit 1; }
