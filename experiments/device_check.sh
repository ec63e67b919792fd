#!/usr/bin/env bash
# One prepared GPU run of every benchmark a GPU needs; writes one JSON of figures.
#
#   bash experiments/device_check.sh [OUT_DIR]        # OUT_DIR default: $OUT or runs/device_check
#   DEVICE_CHECK_QUICK=1 bash experiments/device_check.sh /tmp/dc   # tiny models, CPU smoke test
#
# Meant for the device machine: jax, flax, optax, orbax and numpy, but no
# TensorFlow, no torch and maybe no ml_collections/absl/pycocotools. Wheels
# for those are installed from $DEVICE_WHEELS (default experiments/wheels/,
# built by experiments/fetch_device_wheels.sh and carried with the run; never
# committed). Every step uses full-size ResNet-50 models with random weights and
# in-memory batches (no TensorFlow), runs under its own timeout, and leaves
# OUT_DIR/<step>.json (when the benchmark writes one) and OUT_DIR/<step>.log.
# The steps' budgets add up to about 8 minutes. At the end OUT_DIR/figures.json
# merges them: per step its exit status, seconds, JSON figures (if any) and the
# last lines of its log. A failing step does not stop the others.
set -u
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-runs/device_check}}"
mkdir -p "$OUT_DIR"
PYTHON="${PYTHON:-python}"
QUICK="${DEVICE_CHECK_QUICK:-0}"
WHEELS="${DEVICE_WHEELS:-experiments/wheels}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  # Only what is missing; --no-index: the device machine has no network.
  for module_wheel in yaml:PyYAML absl:absl_py ml_collections:ml_collections pycocotools:pycocotools; do
    module="${module_wheel%%:*}"; wheel="${module_wheel##*:}"
    if ! "$PYTHON" -c "import $module" 2>/dev/null; then
      "$PYTHON" -m pip install -q --no-index --no-deps --find-links "$WHEELS" "$wheel" \
        || echo "device_check: could not install $wheel from $WHEELS"
    fi
  done
fi

"$PYTHON" -c "import jax; print('device_check: jax', jax.__version__, jax.devices())" \
  | tee "$OUT_DIR/devices.log"

# step NAME TIMEOUT_S COMMAND...: runs one benchmark, recording status and time.
step() {
  local name="$1" limit="$2"; shift 2
  echo "=== $name (timeout ${limit}s): $*"
  local start=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
  local rc=$?
  echo "$rc $((SECONDS - start))" >"$OUT_DIR/$name.status"
  grep -v '^[WI][0-9]\{4\} ' "$OUT_DIR/$name.log" | tail -n 25
  echo "=== $name: exit $rc after $((SECONDS - start)) s"
}

if [ "$QUICK" = 1 ]; then
  TRAIN_CONFIG=configs/demo.py; TRAIN_STEPS=2; PROPOSAL_IMAGES=2
  PROPOSAL_FLAGS=(--tiny); TORCH_FLAGS=(--small --height=120 --width=160 --batch=4 --repeats=1)
  LIMITS=(900 600 900 600)   # A smoke test on a shared CPU: slow compiles.
else
  TRAIN_CONFIG=configs/deepmask.py; TRAIN_STEPS=20; PROPOSAL_IMAGES=20
  PROPOSAL_FLAGS=(); TORCH_FLAGS=()
  LIMITS=(170 75 110 60)   # 170 + 2 x 75 + 110 + 60 = 490 s, plus start-up.
fi
# DEVICE_CHECK_LIMITS="proposals train vs_pytorch cpu_forms" (seconds) overrides them.
if [ -n "${DEVICE_CHECK_LIMITS:-}" ]; then read -r -a LIMITS <<<"$DEVICE_CHECK_LIMITS"; fi

step proposals "${LIMITS[0]}" "$PYTHON" experiments/bench_proposals.py \
  --models deepmask,sharpmask --images "$PROPOSAL_IMAGES" \
  --json "$OUT_DIR/proposals.json" "${PROPOSAL_FLAGS[@]}"
# bench_train prints its figures (kept in the log); --json where it has one.
for dtype in float32 bfloat16; do  # One process each: a bf16 failure keeps float32's figures.
  step "train_$dtype" "${LIMITS[1]}" "$PYTHON" experiments/bench_train.py \
    --config="$TRAIN_CONFIG" --steps="$TRAIN_STEPS" --dtypes="$dtype"
done
# The CPU's conv speed forms on this backend (float32), against train_float32's
# XLA convs: models/convolution.py uses them off the CPU only if faster.
step train_cpu_forms "${LIMITS[3]}" "$PYTHON" experiments/bench_train.py \
  --config="$TRAIN_CONFIG" --steps="$TRAIN_STEPS" --dtypes=float32 --conv_forms=cpu
step vs_pytorch "${LIMITS[2]}" "$PYTHON" experiments/bench_vs_pytorch.py \
  --json="$OUT_DIR/vs_pytorch.json" "${TORCH_FLAGS[@]}"

"$PYTHON" - "$OUT_DIR" <<'EOF'
"""Merges OUT_DIR/<step>.{status,json,log} into OUT_DIR/figures.json."""
import json, pathlib, re, sys
out = pathlib.Path(sys.argv[1])
figures = {'devices': out.joinpath('devices.log').read_text().strip()}
for status in sorted(out.glob('*.status')):
  name = status.stem
  rc, seconds = status.read_text().split()
  log = [line for line in out.joinpath(f'{name}.log').read_text().splitlines()
         if not re.match(r'^[WI]\d{4} ', line)]
  entry = {'exit': int(rc), 'seconds': int(seconds), 'log_tail': log[-25:]}
  figures_file = out / f'{name}.json'
  if figures_file.exists():
    entry['figures'] = json.loads(figures_file.read_text())
  figures[name] = entry
out.joinpath('figures.json').write_text(json.dumps(figures, indent=1))
print(f'device_check: figures in {out / "figures.json"}; exits',
      {k: v['exit'] for k, v in figures.items() if isinstance(v, dict)})
EOF
