#!/usr/bin/env bash
# Sync SYNC_DIR (default /workspace/ComfyUI/output) to R2 in real time, verified and journaled.
# Thin wrapper over `python -m worker.sync`; see --help for flags, env and exit codes.
# Runs in the foreground; SIGTERM finishes in-flight uploads and flushes the journal.
# `r2_sync.sh --once` uploads everything pending and exits 0 only when all is verified.
set -euo pipefail

usage() {
  echo "usage: r2_sync.sh [--once [--timeout SECONDS]] [--sync-dir DIR] [--state-dir DIR] [--help]"
}

log() { echo "[r2_sync] $*" >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=worker_python.sh
source "${here}/worker_python.sh"

# exec: the daemon itself receives SIGTERM from the pod's start script.
exec "${python}" -m worker.sync "$@"
