#!/usr/bin/env bash
# The approach this project replaces, reproduced for comparison (not used by the image):
# inotifywait on close_write only, a fixed `sleep 1` per event, then one Python process per
# file in the background. No moved_to, no start-up scan, no journal, no verification.
set -euo pipefail
dir="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
inotifywait -m -r -q -e close_write --format '%w%f' "${dir}" | while read -r path; do
  sleep 1
  if [ -f "${path}" ]; then
    ("${PYTHON:-python3}" "${here}/legacy_upload.py" "${path}" || echo "FAILED ${path}" >&2) &
  fi
done
