#!/usr/bin/env bash
# Download and verify the ComfyUI models of MODEL_GROUPS (or download_<x>=true toggles).
# Thin wrapper over `python -m worker.models`; see --help for flags, env and exit codes.
set -euo pipefail

usage() {
  echo "usage: download_models.sh [--groups a,b] [--verify-only] [--status-file PATH] [--parallel N] [--list] [--help]"
}

log() { echo "[download_models] $*" >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export MODEL_MANIFEST="${MODEL_MANIFEST:-${here}/models.toml}"
export PYTHONPATH="${here}${PYTHONPATH:+:${PYTHONPATH}}"
python="${PYTHON:-$(if [ -x "${here}/../.venv/bin/python" ]; then echo "${here}/../.venv/bin/python"; else echo python3; fi)}" # the image sets PYTHON; a checkout uses its uv environment

if ! command -v "${python}" >/dev/null 2>&1; then
  usage >&2
  log "${python} not found; set PYTHON to the interpreter that has the worker's requirements"
  exit 2
fi

exec "${python}" -m worker.models "$@"
