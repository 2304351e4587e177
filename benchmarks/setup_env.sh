#!/usr/bin/env bash
# Creates .bench-venv: neuroevo plus the peers it is measured against (never runtime deps).
# Versions as in shared/PEER_BASELINES.md. Usage: bash benchmarks/setup_env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.bench-venv
PIP="$VENV/bin/python -m pip install -q -c constraints.txt"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
$PIP torch==2.13.0
$PIP -e .
$PIP neat-python==2.0.0 evotorch==0.6.1 gymnasium==1.4.0 numpy cma
$PIP evosax==0.3.2 jax
# EvoX 1.4 is torch-based; with the constraints it keeps torch 2.13.0
$PIP evox==1.4.0
# gymnax 1.0.1 declares gymnasium<1.4 but its CartPole works with 1.4.0
$VENV/bin/python -m pip install -q --no-deps gymnax==1.0.1
$PIP six chex flax seaborn
# Ray Tune's PBT (pbt_vs_ray_tune.py) and Ray actors for EvoTorch (ray_scaling.py)
$PIP "ray[tune]==2.60.0"
# Hopper-v5 for ray_scaling.py and examples/hopper_es.toml (the neuroevo[mujoco] extra)
$PIP "gymnasium[mujoco]==1.4.0" imageio
$VENV/bin/python -c "import neat, evotorch, evosax, evox, gymnax, cma, jax, ray, mujoco; print('bench env ready')"
