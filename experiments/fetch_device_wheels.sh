#!/usr/bin/env bash
# Downloads the small wheels experiments/device_check.sh installs on a device
# machine that lacks them (it has jax, flax, optax, orbax and numpy only).
#
#   bash experiments/fetch_device_wheels.sh [DIR]    # default experiments/wheels
#
# The folder is git-ignored: build it before a device run and carry it
# (run tool: carry=["experiments/wheels"]). pycocotools is compiled, so its
# wheel is fetched for each CPython the device image may have.
set -eu
cd "$(dirname "$0")/.."
DIR="${1:-experiments/wheels}"
mkdir -p "$DIR"
python -m pip download -q --no-deps -d "$DIR" ml-collections absl-py
for version in 3.10 3.11 3.12 3.13; do
  python -m pip download -q --no-deps --only-binary=:all: \
    --python-version "$version" --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 -d "$DIR" pycocotools pyyaml \
    || echo "no pycocotools or pyyaml wheel for Python $version"
done
du -sh "$DIR"
ls "$DIR"
