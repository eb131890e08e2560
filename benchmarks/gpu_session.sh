#!/usr/bin/env bash
# One GPU session for issue #18, about 6 minutes: constants, memory validation (with the test
# suite on CUDA beside it), step times. Run from the repository root with OUT set to an empty
# folder; wheels of missing packages may be in WHEELS (a folder; installed to /tmp/site).
#
#   OUT=/tmp/out WHEELS=../.whl bash benchmarks/gpu_session.sh 2>&1 | tee /tmp/out/log.txt
#   python benchmarks/gpu_report.py /tmp/out     # then, anywhere: the Markdown report
#
# Every step has its own timeout, so one hung step cannot eat the session; each writes its
# results as it goes (a step cut short keeps what it measured).
set -u
: "${OUT:?set OUT to an empty folder}"
export PYTHONUNBUFFERED=1
start=$(date +%s)
stamp() { echo "=== [$(( $(date +%s) - start )) s] $*"; }

SITE=/tmp/site
if [ -n "${WHEELS:-}" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  stamp "installing wheels from $WHEELS"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHEELS"/*.whl || echo "wheel install FAILED"
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
  --target "$SITE" plugins/nasspeech-seqplus >/dev/null 2>&1 \
  || echo "(the example plugin did not install: its tests will skip)"
export PYTHONPATH="$SITE:$PWD"

stamp "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
python3 -c "import torch, pydantic, nasspeech; print('torch', torch.__version__, 'cuda', \
torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'device', \
torch.cuda.get_device_name(0), 'total_memory', \
torch.cuda.get_device_properties(0).total_memory, 'nasspeech from', nasspeech.__file__)"

stamp "constants (alone on the device)"
timeout 50 python3 benchmarks/gpu_constants.py --out "$OUT"
echo "constants exit $?"
CTX=$(python3 -c "import json; r=[x for x in json.load(open('$OUT/constants.json')) \
if x['kind']=='context'][0]['value']; print(r['after_search_step'])" 2>/dev/null)
echo "CUDA context after a search step: ${CTX:-unknown} B"

stamp "test suite on CUDA, in the background"
rm -f /tmp/gpu_session_tests_done
# six workers (pytest-xdist) and a per-test limit (pytest-timeout) where those are installed
par=""; python3 -c "import xdist" 2>/dev/null && par="-n 6 --dist loadfile"
python3 -c "import pytest_timeout" 2>/dev/null && par="$par --timeout 90"
echo "pytest options: ${par:-none}"
( timeout 200 python3 -m pytest -m "gpu or not gpu" $par -v -rfE \
    --junitxml="$OUT/pytest.xml" > "$OUT/pytest.txt" 2>&1
  echo "pytest exit $?" >> "$OUT/pytest.txt"; touch /tmp/gpu_session_tests_done ) &
tests=$!

stamp "memory validation"
timeout 215 python3 benchmarks/gpu_memory_validation.py --out "$OUT" --budget-s 195 \
  --alone-after /tmp/gpu_session_tests_done ${CTX:+--context-bytes "$CTX"}
echo "validation exit $?"

stamp "waiting for the test suite"
wait "$tests"
tail -n 25 "$OUT/pytest.txt"

stamp "step times"
timeout 100 python3 benchmarks/gpu_step_time.py --out "$OUT"
echo "step times exit $?"
stamp "done"
ls -la "$OUT"
