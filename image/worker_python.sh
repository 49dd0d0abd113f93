#!/usr/bin/env bash
# Sourced by the thin wrappers over `python -m worker.*` (download_models.sh, r2_sync.sh):
# puts image/ on PYTHONPATH and sets `python` to the interpreter that has the worker's
# requirements (the image sets PYTHON; a checkout uses its uv environment), or exits 2.
# The wrapper defines `here` (its folder), `usage` and `log` before sourcing this file.
set -euo pipefail

: "${here:?set by the wrapper that sources this file}"
export PYTHONPATH="${here}${PYTHONPATH:+:${PYTHONPATH}}"
python="${PYTHON:-$(if [ -x "${here}/../.venv/bin/python" ]; then echo "${here}/../.venv/bin/python"; else echo python3; fi)}"

if ! command -v "${python}" >/dev/null 2>&1; then
  usage >&2
  log "${python} not found; set PYTHON to the interpreter that has the worker's requirements"
  exit 2
fi
