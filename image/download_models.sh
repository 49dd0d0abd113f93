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
# shellcheck source=worker_python.sh
source "${here}/worker_python.sh"

exec "${python}" -m worker.models "$@"
