#!/usr/bin/env bash
# DoomTakeCover end to end at the paper's model scale (wm_jax/world_models/configs/doom_take_cover.py)
# on a GPU machine with no network.
#
# The machine has Python 3.12 with jax, flax, optax, orbax-checkpoint and chex; the rest of the
# stack travels as Python 3.12 wheels, made on any machine with network access:
#
#   bash experiments/gpu/doom_take_cover.sh --download .wheels
#
# then, on the GPU machine, from the repository root (collection runs on all CPU cores):
#
#   bash experiments/gpu/doom_take_cover.sh .wheels runs/doom_gpu [--config.KEY=VALUE ...]
#
# Each stage prints its time; the evaluate stage prints the score over 100 real episodes.
# Usage and the measured run: docs/environments.md, docs/results.md.
set -euo pipefail

# Not preinstalled on the GPU machine's Python (it has jax, flax, optax, orbax-checkpoint, chex).
# (promise too, built below: it ships only as a source archive.)
PACKAGES=(vizdoom gymnasium farama-notifications gymnax evosax tensorflow-datasets
          array-record grain dm-tree immutabledict simple-parsing docstring-parser
          tensorflow-metadata googleapis-common-protos termcolor toml ml-collections
          importlib-resources dotmap tensorboardx dm-pix portpicker)

if [[ "${1:-}" == --download ]]; then
  mkdir -p "$2"
  python3 -m pip wheel -q --no-deps -w "$2" promise==2.3
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$2" \
    "${PACKAGES[@]}"
  exit
fi

wheels=$1 workdir=$2
shift 2
start=$(date +%s)
python3 -m pip install -q --no-index --no-deps "$wheels"/*.whl
echo "install done in $(( $(date +%s) - start )) s"
export PYTHONPATH=$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false
python3 -c 'import jax; print("devices:", jax.devices())'
python3 -m experiments.world_models --config=wm_jax/world_models/configs/doom_take_cover.py \
  --workdir="$workdir" "$@"
echo "total $(( $(date +%s) - start )) s"
