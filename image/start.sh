#!/usr/bin/env bash
# Container entry point of the worker image.
#   MODE=serverless: GPU preflight, model paths, verify models (download the missing ones in
#                    the foreground), ComfyUI, the RunPod handler.
#   MODE=pod:        GPU preflight, model paths, background model downloads, ComfyUI on
#                    loopback behind an authenticating nginx proxy on COMFY_PORT, the R2
#                    sync daemon (ENABLE_R2_SYNC, restarted with backoff) and JupyterLab.
# Every variable is described in docs/worker-image.md.
# Exit codes: 2 bad configuration, 3 no GPU, 4 models missing and their download failed
# (serverless), else the handler's exit code (serverless) or 143 after SIGTERM.
set -euo pipefail

usage() {
  echo "usage: start.sh   (configured by environment: MODE=serverless|pod, see docs/worker-image.md)"
}

log() { printf '[start] %s\n' "$*" >&2; }
die() {
  local code=$1
  shift
  log "ERROR: $*"
  exit "$code"
}
# Prefix every line of a child's output with its name, unbuffered.
prefix() { sed -u "s/^/[$1] /"; }
truthy() { [[ "${1,,}" =~ ^(1|true|yes|on)$ ]]; }

case "${1:-}" in
  -h | --help)
    usage
    exit 0
    ;;
  "") ;;
  *)
    usage >&2
    exit 2
    ;;
esac

MODE="${MODE:-pod}"
APP_DIR="${APP_DIR:-/opt/worker}"
COMFYUI_DIR="${COMFYUI_DIR:-/opt/ComfyUI}"
PYTHON="${PYTHON:-python3}"
COMFY_PORT="${COMFY_PORT:-8188}"
# Pods: ComfyUI listens here on 127.0.0.1; nginx publishes it on COMFY_PORT with a password.
COMFY_INTERNAL_PORT="${COMFY_INTERNAL_PORT:-18188}"
BAKED_MODELS_DIR="${BAKED_MODELS_DIR:-/opt/models}"
# The proxy's password stays in this shell, unexported: no child (ComfyUI and its custom
# nodes, downloads, sync, SSH, Jupyter) inherits it; only the config writer gets it.
unset PROXY_PASSWORD # an inherited variable of that name would stay exported
PROXY_PASSWORD="${COMFYUI_PASSWORD:-}"
unset COMFYUI_PASSWORD
export COMFY_PID_FILE="${COMFY_PID_FILE:-/tmp/comfyui.pid}"
export COMFY_URL="${COMFY_URL:-http://127.0.0.1:${COMFY_PORT}}"
export PYTHONPATH="${APP_DIR}${PYTHONPATH:+:${PYTHONPATH}}"

case "${MODE}" in
  serverless) VOLUME_DIR="${VOLUME_DIR:-/runpod-volume}" ;;
  pod) VOLUME_DIR="${VOLUME_DIR:-/workspace}" ;;
  *) die 2 "MODE must be 'serverless' or 'pod', got '${MODE}'" ;;
esac

# Every folder ComfyUI core or a pinned custom node loads models from. diffusion_models,
# text_encoders and background_removal were the ones other workers forgot to map.
MODEL_FOLDERS=(
  checkpoints clip clip_vision configs controlnet diffusion_models unet text_encoders vae
  vae_approx loras upscale_models latent_upscale_models embeddings hypernetworks
  style_models gligen photomaker model_patches audio_encoders background_removal
  detection onnx sams ultralytics
)

COMFY_PID=""
MAIN_PID=""
SYNC_PID=""
PROXY_PID=""
DOWNLOAD_PID=""
STOPPING=false

preflight_gpu() {
  if truthy "${SKIP_GPU_CHECK:-false}"; then
    log "SKIP_GPU_CHECK is set: not checking for a GPU (ComfyUI will fall back to CPU)"
    return
  fi
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    die 3 "no NVIDIA driver in this container (nvidia-smi not found). Run it on a GPU pod or" \
      "GPU endpoint, locally with 'docker run --gpus all', or set SKIP_GPU_CHECK=true to debug."
  fi
  local gpus
  if ! gpus="$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1)" ||
    [[ -z "${gpus}" ]]; then
    die 3 "no GPU visible (nvidia-smi: ${gpus:-no output}). The host's driver or the" \
      "container's GPU assignment is broken: restart the pod or pick another GPU type."
  fi
  while IFS= read -r line; do log "GPU: ${line}"; done <<<"${gpus}"
}

# Where models are verified or downloaded: MODELS_DIR when set (the endpoint sets it with a
# network volume); pods: the volume's ComfyUI/models; serverless: the baked models when the
# image has them, else the volume's models folder.
resolve_models_dir() {
  if [[ -n "${MODELS_DIR:-}" ]]; then
    return
  fi
  if [[ "${MODE}" == pod ]]; then
    MODELS_DIR="${VOLUME_DIR}/ComfyUI/models"
  elif [[ -f "${BAKED_MODELS_DIR}/.baked" || ! -d "${VOLUME_DIR}/models" ]]; then
    MODELS_DIR="${BAKED_MODELS_DIR}"
  else
    MODELS_DIR="${VOLUME_DIR}/models"
  fi
}

# The model roots ComfyUI searches, most specific first.
model_roots() {
  if [[ "${MODE}" == pod ]]; then
    echo "volume ${MODELS_DIR}"
    return
  fi
  if [[ "${MODELS_DIR}" != "${BAKED_MODELS_DIR}" ]]; then
    echo "volume ${MODELS_DIR}"
  elif [[ -d "${VOLUME_DIR}/models" ]]; then
    echo "volume ${VOLUME_DIR}/models"
  fi
  echo "baked ${BAKED_MODELS_DIR}"
}

write_model_paths() {
  local target="${COMFYUI_DIR}/extra_model_paths.yaml" name root folder first=true
  {
    echo "# Written by start.sh at container start (MODE=${MODE}); edits are overwritten."
    while read -r name root; do
      echo "${name}:"
      echo "  base_path: ${root}"
      if [[ "${first}" == true ]]; then
        echo "  is_default: true"
        first=false
      fi
      for folder in "${MODEL_FOLDERS[@]}"; do
        echo "  ${folder}: ${folder}/"
      done
    done < <(model_roots)
  } >"${target}.tmp"
  mv "${target}.tmp" "${target}"
  log "model folders mapped in ${target}: $(model_roots | awk '{print $2}' | paste -sd ' ')"
}

# Pods keep ComfyUI in the image and put its output, input and user folders on the volume,
# so a mounted /workspace never hides ComfyUI and results survive the pod.
link_onto_volume() {
  local name=$1
  local source="${COMFYUI_DIR}/${name}" target="${VOLUME_DIR}/ComfyUI/${name}"
  mkdir -p "${target}"
  if [[ -L "${source}" ]]; then
    rm -f "${source}"
  elif [[ -d "${source}" ]]; then
    cp -a -n "${source}/." "${target}/"
    rm -rf "${source}"
  fi
  ln -s "${target}" "${source}"
}

selected_models() {
  [[ -n "${MODEL_GROUPS:-}" ]] || env | grep -q '^download_.*=true$'
}

# Runs `download_models.sh --verify-only` on $1; its output goes to the log and to $2.
verify_models_in() {
  local models_dir=$1 report=$2
  MODELS_DIR="${models_dir}" "${APP_DIR}/download_models.sh" --verify-only 2>&1 |
    tee "${report}" | prefix models
}

# Serverless: use the models where they are verified (MODELS_DIR, else the baked ones);
# if they are missing, download them into MODELS_DIR in the foreground before ComfyUI
# starts. Resumes `.partial` files and skips verified ones, so a second worker on the same
# volume finds them verified. Exits 4 only when the download fails.
ensure_serverless_models() {
  local models_dir=$1 report rc=0 missing
  if ! selected_models; then
    log "no MODEL_GROUPS set: skipping model verification"
    return
  fi
  report="$(mktemp)"
  log "verifying models of MODEL_GROUPS=${MODEL_GROUPS:-} in ${models_dir}"
  verify_models_in "${models_dir}" "${report}" || rc=$?
  if ((rc == 0)); then
    log "models verified in ${models_dir}"
    rm -f "${report}"
    return
  fi
  if [[ "${BAKED_MODELS_DIR}" != "${models_dir}" && -f "${BAKED_MODELS_DIR}/.baked" ]]; then
    log "verifying the baked models in ${BAKED_MODELS_DIR}"
    if verify_models_in "${BAKED_MODELS_DIR}" /dev/null; then
      log "models verified in ${BAKED_MODELS_DIR} (baked into the image)"
      rm -f "${report}"
      return
    fi
  fi
  missing="$(grep -oE '[0-9]+ of [0-9]+ selected models are missing' "${report}" |
    head -n 1 | cut -d ' ' -f 1 || true)"
  rm -f "${report}"
  log "downloading ${missing:-the} missing models into ${models_dir}" \
    "(MODEL_GROUPS=${MODEL_GROUPS:-}) before ComfyUI starts; on an empty volume" \
    "FLUX.1-dev fp8 alone is ~17 GB (bake with BAKE_MODEL_GROUPS to skip this). Progress:" \
    "${models_dir}/.download-status.json"
  mkdir -p "${models_dir}"
  local download=("${APP_DIR}/download_models.sh"
    --status-file "${models_dir}/.download-status.json")
  # Workers sharing a volume take turns where the filesystem supports locks: the next one
  # then finds the files verified instead of writing the same .partial files at once.
  if command -v flock >/dev/null 2>&1; then
    download=(flock "${models_dir}/.download.lock" "${download[@]}")
  fi
  # In the background and waited for, so a stop signal is handled during a long download.
  MODELS_DIR="${models_dir}" "${download[@]}" > >(prefix models) 2>&1 &
  DOWNLOAD_PID=$!
  rc=0
  wait "${DOWNLOAD_PID}" || rc=$?
  DOWNLOAD_PID=""
  if ((rc != 0)); then
    die 4 "downloading the models of MODEL_GROUPS=${MODEL_GROUPS:-} into ${models_dir} failed" \
      "(download_models.sh exit ${rc}: 1 download/verification, 3 disk full, 4 gated model:" \
      "set HF_TOKEN). Bake them into the image (BAKE_MODEL_GROUPS build arg) or fill the" \
      "network volume from a pod (MODE=pod)."
  fi
  log "models downloaded and verified in ${models_dir}"
}

download_models_in_background() {
  local models_dir=$1 status="$1/.download-status.json"
  if ! truthy "${DOWNLOAD_MODELS:-true}"; then
    log "DOWNLOAD_MODELS=false: not downloading models"
    return
  fi
  mkdir -p "${models_dir}"
  log "downloading models of MODEL_GROUPS=${MODEL_GROUPS:-} in the background; progress: ${status}"
  MODELS_DIR="${models_dir}" "${APP_DIR}/download_models.sh" --status-file "${status}" \
    > >(prefix models) 2>&1 &
}

# Outputs embed the prompt and workflow unless --disable-metadata: off on serverless (those are
# the app's users' prompts, published with the asset), on on pods (artists drag PNGs back into
# ComfyUI). SAVE_WORKFLOW_METADATA overrides either default.
metadata_args() {
  local default=false
  [[ "${MODE}" == pod ]] && default=true
  if truthy "${SAVE_WORKFLOW_METADATA:-${default}}"; then
    log "outputs keep their prompt/workflow metadata (SAVE_WORKFLOW_METADATA)"
  else
    log "outputs carry no prompt/workflow metadata (SAVE_WORKFLOW_METADATA=false)"
    echo --disable-metadata
  fi
}

start_comfyui() {
  # Loopback only in both modes: pods publish ComfyUI through the proxy (start_proxy).
  local listen=127.0.0.1 port="${COMFY_PORT}"
  [[ "${MODE}" == pod ]] && port="${COMFY_INTERNAL_PORT}"
  local args=(main.py --listen "${listen}" --port "${port}" --disable-auto-launch)
  local metadata
  metadata="$(metadata_args)"
  [[ -n "${metadata}" ]] && args+=("${metadata}")
  if [[ -n "${COMFY_ARGS:-}" ]]; then
    local extra
    read -r -a extra <<<"${COMFY_ARGS}"
    args+=("${extra[@]}")
  fi
  log "starting ComfyUI on ${listen}:${port}"
  (cd "${COMFYUI_DIR}" && exec "${PYTHON}" -u "${args[@]}") > >(prefix comfyui) 2>&1 &
  COMFY_PID=$!
  echo "${COMFY_PID}" >"${COMFY_PID_FILE}"
}

# --- pod proxy (issue 12): ComfyUI is published only behind HTTP basic auth -------------
start_proxy() {
  if [[ -z "${PROXY_PASSWORD}" ]]; then
    log "WARNING: COMFYUI_PASSWORD unset: port ${COMFY_PORT} stays closed and ComfyUI answers" \
      "only on 127.0.0.1:${COMFY_INTERNAL_PORT} inside the pod. Set videoPod.comfyPassword" \
      "(pulumi config set --secret videoPod.comfyPassword <password> --stack <stack>)"
    return
  fi
  if ! command -v "${NGINX:-nginx}" >/dev/null 2>&1; then
    log "WARNING: nginx not found: port ${COMFY_PORT} stays closed (ComfyUI is on loopback)"
    return
  fi
  local dir="${PROXY_DIR:-/tmp/comfy-proxy}" config
  if ! config="$(COMFYUI_PASSWORD="${PROXY_PASSWORD}" "${PYTHON}" -m worker.proxy \
    --out-dir "${dir}" --template "${APP_DIR}/proxy/nginx.conf.template" \
    --listen "0.0.0.0:${COMFY_PORT}" --upstream "127.0.0.1:${COMFY_INTERNAL_PORT}")"; then
    log "WARNING: the proxy config could not be written: port ${COMFY_PORT} stays closed"
    return
  fi
  log "publishing ComfyUI on port ${COMFY_PORT} behind a password (user ${COMFYUI_USER:-comfy})"
  PROXY_PASSWORD=""
  "${NGINX:-nginx}" -e stderr -c "${config}" > >(prefix proxy) 2>&1 &
  PROXY_PID=$!
}

# --- R2 sync supervision (issue 12) -------------------------------------------------------
# Runs the daemon and starts it again when it dies, after 1, 2, 4 ... SYNC_RESTART_MAX_S
# seconds (back to 1 s after a run longer than a minute), one line per restart. Exit 2 is a
# configuration error that a restart cannot fix. SIGTERM stops the daemon and this loop.
supervise_sync() {
  local delay=1 restarts=0 child="" rc started stopping=false
  trap 'stopping=true; [[ -n "${child}" ]] && kill -TERM "${child}" 2>/dev/null' TERM INT
  while true; do
    started=${SECONDS}
    "${APP_DIR}/r2_sync.sh" > >(prefix r2_sync) 2>&1 &
    child=$!
    rc=0
    wait "${child}" || rc=$?
    while kill -0 "${child}" 2>/dev/null; do wait "${child}" || rc=$?; done
    child=""
    [[ "${stopping}" == true ]] && exit 0
    if ((rc == 2)); then
      log "ERROR: the R2 sync daemon exited 2 (configuration error, see [r2_sync] above);" \
        "not restarting it"
      exit 2
    fi
    ((SECONDS - started > 60)) && delay=1
    restarts=$((restarts + 1))
    log "the R2 sync daemon exited with ${rc}; restart ${restarts} in ${delay} s"
    sleep "${delay}" &
    wait $! || true
    [[ "${stopping}" == true ]] && exit 0
    delay=$((delay * 2 > ${SYNC_RESTART_MAX_S:-60} ? ${SYNC_RESTART_MAX_S:-60} : delay * 2))
  done
}

start_sync_daemon() {
  if ! truthy "${ENABLE_R2_SYNC:-false}"; then
    log "ENABLE_R2_SYNC is off: outputs stay on the volume only"
    return
  fi
  export SYNC_DIR="${SYNC_DIR:-${VOLUME_DIR}/ComfyUI/output}"
  export SYNC_STATE_DIR="${SYNC_STATE_DIR:-${VOLUME_DIR}/.r2_sync}"
  log "syncing ${SYNC_DIR} to R2"
  supervise_sync &
  SYNC_PID=$!
}

# RunPod injects the user's key as PUBLIC_KEY when the template enables SSH.
start_ssh() {
  if [[ -z "${PUBLIC_KEY:-}" ]]; then
    log "PUBLIC_KEY unset: no SSH server"
    return
  fi
  local sshd="${SSHD:-/usr/sbin/sshd}"
  if ! command -v "${sshd}" >/dev/null 2>&1; then
    log "WARNING: ${sshd} not found: SSH disabled"
    return
  fi
  mkdir -p "${HOME}/.ssh"
  chmod 700 "${HOME}/.ssh"
  if ! grep -qxF "${PUBLIC_KEY}" "${HOME}/.ssh/authorized_keys" 2>/dev/null; then
    printf '%s\n' "${PUBLIC_KEY}" >>"${HOME}/.ssh/authorized_keys"
  fi
  chmod 600 "${HOME}/.ssh/authorized_keys"
  # The image carries no host keys (a key baked into an image is shared by every pod that
  # runs it): this pod makes its own.
  if ! "${SSH_KEYGEN:-ssh-keygen}" -A >/dev/null; then
    log "WARNING: could not generate SSH host keys: SSH disabled"
    return
  fi
  log "SSH host keys generated for this pod"
  [[ -n "${SSHD:-}" ]] || mkdir -p /run/sshd
  log "starting the SSH server on port 22"
  "${sshd}" -D -e > >(prefix sshd) 2>&1 &
}

start_jupyter() {
  if ! truthy "${ENABLE_JUPYTER:-true}"; then
    return
  fi
  # Jupyter reads JUPYTER_TOKEN from its environment: the token never shows up in `ps`.
  export JUPYTER_TOKEN="${JUPYTER_TOKEN:-${JUPYTER_PASSWORD:-}}"
  if [[ -z "${JUPYTER_TOKEN}" ]]; then
    unset JUPYTER_TOKEN
    log "JUPYTER_TOKEN/JUPYTER_PASSWORD unset: JupyterLab prints a one-time token in its log"
  fi
  log "starting JupyterLab on port ${JUPYTER_PORT:-8888}"
  jupyter lab --ip=0.0.0.0 --port="${JUPYTER_PORT:-8888}" --no-browser --allow-root \
    --ServerApp.root_dir="${VOLUME_DIR}" > >(prefix jupyter) 2>&1 &
  MAIN_PID=$!
}

stop_process() {
  local pid=$1 name=$2 waited=0
  [[ -n "${pid}" ]] && kill -0 "${pid}" 2>/dev/null || return 0
  log "stopping ${name}"
  kill -TERM "${pid}" 2>/dev/null || true
  while kill -0 "${pid}" 2>/dev/null && ((waited < ${STOP_TIMEOUT_S:-20} * 10)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  kill -KILL "${pid}" 2>/dev/null || true
  wait "${pid}" 2>/dev/null || true
}

shutdown() {
  [[ "${STOPPING}" == true ]] && return
  STOPPING=true
  stop_process "${DOWNLOAD_PID}" "the model download"
  stop_process "${MAIN_PID}" "$([[ "${MODE}" == pod ]] && echo JupyterLab || echo the handler)"
  stop_process "${PROXY_PID}" "the ComfyUI proxy"
  stop_process "${COMFY_PID}" ComfyUI
  if [[ -n "${SYNC_PID}" ]]; then
    stop_process "${SYNC_PID}" "the R2 sync daemon"
    log "flushing pending outputs to R2 (r2_sync.sh --once)"
    if ! "${APP_DIR}/r2_sync.sh" --once --timeout "${SYNC_FLUSH_TIMEOUT_S:-60}" \
      > >(prefix r2_sync) 2>&1; then
      log "WARNING: the final R2 flush did not finish; unsynced files stay on the volume"
    fi
  fi
}

on_signal() {
  log "received a stop signal"
  shutdown
  exit 143
}

main() {
  log "MODE=${MODE} VOLUME_DIR=${VOLUME_DIR} COMFYUI_DIR=${COMFYUI_DIR}"
  preflight_gpu
  [[ -d "${COMFYUI_DIR}" ]] || die 2 "ComfyUI not found at COMFYUI_DIR=${COMFYUI_DIR}"
  resolve_models_dir
  write_model_paths
  trap on_signal TERM INT

  if [[ "${MODE}" == serverless ]]; then
    ensure_serverless_models "${MODELS_DIR}"
    start_comfyui
    log "starting the serverless handler (it waits for ComfyUI while ComfyUI's process lives)"
    # HANDLER_ARGS passes runpod SDK flags, e.g. "--rp_serve_api --rp_api_host 0.0.0.0" for
    # the SDK's local test server.
    # Uploaded outputs are deleted from the container disk (they live in R2).
    export COMFY_OUTPUT_DIR="${COMFY_OUTPUT_DIR:-${COMFYUI_DIR}/output}"
    # The handler caches bucket LoRAs in ${MODELS_DIR}/loras/bucket (ComfyUI lists it).
    export MODELS_DIR
    local handler_args=()
    [[ -n "${HANDLER_ARGS:-}" ]] && read -r -a handler_args <<<"${HANDLER_ARGS}"
    "${PYTHON}" -u -m worker.handler "${handler_args[@]}" > >(prefix handler) 2>&1 &
    MAIN_PID=$!
    local rc=0
    wait "${MAIN_PID}" || rc=$?
    MAIN_PID=""
    log "the handler exited with ${rc}"
    shutdown
    exit "${rc}"
  fi

  local name
  for name in output input user; do link_onto_volume "${name}"; done
  download_models_in_background "${MODELS_DIR}"
  start_comfyui
  start_proxy
  start_sync_daemon
  start_ssh
  start_jupyter
  local rc=0
  wait "${COMFY_PID}" || rc=$?
  log "ComfyUI exited with ${rc}; JupyterLab and the sync daemon keep running for inspection"
  COMFY_PID=""
  wait
}

main
