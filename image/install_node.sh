#!/usr/bin/env bash
# Build-time helper: install one ComfyUI custom node at an exact commit, with its
# requirements held by constraints.txt. Used only by the Dockerfile.
# usage: install_node.sh <folder name> <git URL> <40-hex commit>
set -euo pipefail

log() { printf '[install_node] %s\n' "$*" >&2; }

if [[ $# -ne 3 || ! "$3" =~ ^[0-9a-f]{40}$ ]]; then
  echo "usage: install_node.sh <folder name> <git URL> <40-hex commit>" >&2
  exit 2
fi
name=$1
url=$2
commit=$3
comfyui_dir="${COMFYUI_DIR:-/opt/ComfyUI}"
constraints="${CONSTRAINTS:-/opt/build/constraints.txt}"
target="${comfyui_dir}/custom_nodes/${name}"

log "${name} @ ${commit}"
git init -q "${target}"
git -C "${target}" fetch -q --depth 1 "${url}" "${commit}"
git -C "${target}" checkout -q FETCH_HEAD
rm -rf "${target}/.git"
if [[ -f "${target}/requirements.txt" ]]; then
  pip install --no-cache-dir -c "${constraints}" -r "${target}/requirements.txt"
fi
