"""The RunPod serverless handler: one job in, ComfyUI runs it, every output lands in R2.

Owns: the job contract of ``ARCHITECTURE.md`` (``{"workflow"}`` or ``{"template",
"params"}`` plus optional ``images``), validating it before any GPU time is spent, input
images (base64 or an https URL, size-limited) through ``/upload/image``, waiting for a
ComfyUI that is still starting, mapping every failure to one ``error_type`` with a sentence
a person can act on, a per-job timeout that interrupts ComfyUI, and concurrent uploads of
images, videos (core ``animated`` and VHS ``gifs``) and audio to ``R2_PREFIX`` +
``jobs/<job id>/`` with presigned or public URLs. Returns URLs, never base64, so results
stay far below RunPod's payload limits. Settings are read per job from the environment; no
I/O happens at import.

``python -m worker.handler`` starts the RunPod worker loop (``runpod.serverless.start``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import mimetypes
import os
import re
import tempfile
import time
import tomllib
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import requests
from botocore.exceptions import BotoCoreError, ClientError

from worker import templates
from worker.comfy import (
    ComfyClient,
    ComfyError,
    ComfyUnavailableError,
    ExecutionTimeoutError,
    PromptRejectedError,
    RunResult,
)
from worker.r2 import (
    MULTIPART_THRESHOLD,
    R2ConfigError,
    R2Settings,
    make_client,
    object_key,
    transfer_config,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("worker.handler")

ErrorType = Literal[
    "validation",
    "missing_model",
    "missing_node",
    "comfy_error",
    "out_of_memory",
    "timeout",
    "upload",
]
Kind = Literal["image", "video", "audio"]

MAX_NODES = 5000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,127}$")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_INPUT_KEYS = frozenset({"workflow", "template", "params", "images", "comfy_org_api_key"})
_CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".opus": "audio/ogg",
    ".ogg": "audio/ogg",
}
#: Inputs of loader nodes that are choices but not model files.
_NOT_MODEL_INPUTS = frozenset({"weight_dtype", "type", "device", "image", "audio"})


class JobFailureError(Exception):
    """A job ends with ``{"error", "error_type"}``; ``refresh`` asks RunPod for a new worker."""

    def __init__(self, error_type: ErrorType, message: str, *, refresh: bool = False) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.refresh = refresh

    def as_output(self) -> dict[str, Any]:
        """The handler's return value for this failure."""
        output: dict[str, Any] = {"error": self.message, "error_type": self.error_type}
        if self.refresh:
            output["refresh_worker"] = True
        return output


def _env_number(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not lo <= value <= hi:
        raise JobFailureError(
            "validation",
            f"worker misconfigured: {name}={raw!r} must be a number in {lo:g}..{hi:g}; "
            "fix it in the endpoint's environment",
        )
    return value


@dataclass(frozen=True, kw_only=True)
class HandlerSettings:
    """What the handler reads from the worker environment, per job."""

    comfy_url: str = "http://127.0.0.1:8188"
    """``COMFY_URL``: ComfyUI's base URL."""
    pid_file: Path | None = Path("/tmp/comfyui.pid")  # noqa: S108 - start.sh writes it there
    """``COMFY_PID_FILE``: ComfyUI's PID, to tell "booting" from "dead" (empty: unknown)."""
    ready_timeout_s: float = 600.0
    """``COMFY_READY_TIMEOUT_S``: longest wait for a live ComfyUI to answer."""
    job_timeout_s: float = 600.0
    """``JOB_TIMEOUT_S``: longest run of one prompt, queue included; then interrupt."""
    url_expiry_s: int = 3600
    """``R2_URL_EXPIRY_S``: lifetime of presigned URLs (1 s .. 7 days)."""
    max_image_bytes: int = 20 * 1024 * 1024
    """``MAX_INPUT_IMAGE_BYTES``: largest decoded or downloaded input image."""
    max_images: int = 8
    """``MAX_INPUT_IMAGES``: most input images per job."""
    upload_concurrency: int = 8
    """``UPLOAD_CONCURRENCY``: outputs uploaded at once."""
    interrupt_grace_s: float = 10.0
    """``INTERRUPT_GRACE_S``: how long ComfyUI gets to stop after a timeout's interrupt
    before the worker is given up (``refresh_worker``)."""
    allow_http_urls: bool = False
    """``INPUT_URL_ALLOW_HTTP``: also fetch plain ``http://`` image URLs (off: https only)."""
    output_dir: Path | None = None
    """``COMFY_OUTPUT_DIR``: ComfyUI's output folder when it is local; uploaded outputs are
    deleted from it so a long-lived worker's disk does not fill up (unset: keep them)."""
    comfy_org_api_key: str | None = field(default=None, repr=False)
    """``COMFY_ORG_API_KEY``: Comfy.org key for API nodes (a job's own key wins); never logged."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HandlerSettings:
        """Read the settings; a bad value is a ``validation`` failure naming the variable."""
        env = os.environ if env is None else env
        pid_raw = env.get("COMFY_PID_FILE")
        pid_file = cls.pid_file if pid_raw is None else (Path(pid_raw) if pid_raw else None)
        return cls(
            comfy_url=(env.get("COMFY_URL", "").strip() or cls.comfy_url).rstrip("/"),
            pid_file=pid_file,
            ready_timeout_s=_env_number(env, "COMFY_READY_TIMEOUT_S", 600, 1, 86400),
            job_timeout_s=_env_number(env, "JOB_TIMEOUT_S", 600, 1, 86400),
            url_expiry_s=int(_env_number(env, "R2_URL_EXPIRY_S", 3600, 1, 604800)),
            max_image_bytes=int(
                _env_number(env, "MAX_INPUT_IMAGE_BYTES", 20 * 1024 * 1024, 1, 2**31)
            ),
            max_images=int(_env_number(env, "MAX_INPUT_IMAGES", 8, 0, 64)),
            upload_concurrency=int(_env_number(env, "UPLOAD_CONCURRENCY", 8, 1, 64)),
            interrupt_grace_s=_env_number(env, "INTERRUPT_GRACE_S", 10, 0.1, 600),
            allow_http_urls=env.get("INPUT_URL_ALLOW_HTTP", "").strip().lower()
            in {"1", "true", "yes"},
            output_dir=Path(out) if (out := env.get("COMFY_OUTPUT_DIR", "").strip()) else None,
            comfy_org_api_key=env.get("COMFY_ORG_API_KEY", "").strip() or None,
        )


@dataclass(frozen=True)
class InputImage:
    """One entry of ``images`` after decoding."""

    name: str
    data: bytes


@dataclass(frozen=True)
class JobRequest:
    """A validated job: the graph to queue and the images to upload first."""

    graph: dict[str, Any]
    images: tuple[InputImage, ...]
    template: str | None


@dataclass(frozen=True)
class OutputFile:
    """One file ComfyUI reported in the history."""

    node_id: str
    filename: str
    subfolder: str
    folder_type: str
    kind: Kind


# -- input ---------------------------------------------------------------------------------
def _fail(message: str) -> JobFailureError:
    return JobFailureError("validation", message)


def _check_graph(graph: Any) -> dict[str, Any]:
    if not isinstance(graph, dict) or not graph:
        raise _fail("input.workflow must be a non-empty API-format graph {node_id: {...}}")
    if len(graph) > MAX_NODES:
        raise _fail(f"input.workflow has {len(graph)} nodes; at most {MAX_NODES} are accepted")
    for node_id, node in graph.items():
        if (
            not isinstance(node, dict)
            or not isinstance(node.get("class_type"), str)
            or not isinstance(node.get("inputs", {}), dict)
        ):
            raise _fail(
                f"input.workflow node {node_id!r} needs a string class_type and an inputs "
                "object; export the workflow with 'Save (API)' in ComfyUI"
            )
    return graph


def _image_names(raw: Any, max_images: int) -> list[tuple[str, str]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _fail("input.images must be a list of {name, image} objects")
    if len(raw) > max_images:
        raise _fail(f"input.images has {len(raw)} entries; at most {max_images} are accepted")
    entries: list[tuple[str, str]] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) - {"name", "image"}:
            raise _fail(f"input.images[{index}] must be an object with name and image only")
        name, image = item.get("name"), item.get("image")
        if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
            raise _fail(
                f"input.images[{index}].name {name!r} must be a plain file name "
                "(letters, digits, . _ - and spaces, no folders), e.g. input.png"
            )
        if not isinstance(image, str) or not image:
            raise _fail(f"input.images[{index}].image must be base64 data or an https URL")
        if name in (n for n, _ in entries):
            raise _fail(f"input.images has two entries named {name!r}")
        entries.append((name, image))
    return entries


def _template_params(template: templates.Template, raw: Any, names: list[str]) -> dict[str, Any]:
    """The template's params with its image parameter checked against ``images``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise templates.ParamError("input.params must be an object")
    params = dict(raw)
    if template.image_param is None:
        return params
    chosen = params.get(template.image_param)
    if chosen is None and len(names) == 1:
        params[template.image_param] = names[0]
    elif chosen is None:
        hint = f" and params.{template.image_param} naming one of them" if names else ""
        raise templates.ParamError(
            f"template {template.name} needs an input image: send images: "
            f'[{{"name": "input.png", "image": <base64 or https URL>}}]{hint}'
        )
    elif chosen not in names:
        raise templates.ParamError(
            f"params.{template.image_param} is {chosen!r} but images has "
            f"{', '.join(names) or 'no entries'}"
        )
    return params


def parse_input(raw: Any, settings: HandlerSettings) -> tuple[JobRequest, list[tuple[str, str]]]:
    """Validate the job input; return the request (images not fetched yet) and image refs."""
    if not isinstance(raw, dict):
        raise _fail('input must be an object like {"template": "flux_txt2img", "params": {...}}')
    unknown = sorted(set(raw) - _INPUT_KEYS)
    if unknown:
        raise _fail(
            f"input has unknown field(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_INPUT_KEYS))}"
        )
    has_workflow, has_template = "workflow" in raw, "template" in raw
    if has_workflow == has_template:
        raise _fail("input needs exactly one of workflow (an API-format graph) or template")
    entries = _image_names(raw.get("images"), settings.max_images)
    names = [name for name, _ in entries]
    if has_workflow:
        if "params" in raw:
            raise _fail("input.params only applies to a template; edit the workflow instead")
        return JobRequest(_check_graph(raw["workflow"]), (), None), entries
    try:
        template = templates.get_template(raw["template"])
        params = _template_params(template, raw.get("params"), names)
        graph, _variant = templates.render(template, params)
    except templates.ParamError as exc:
        raise _fail(str(exc)) from exc
    return JobRequest(graph, (), template.name), entries


def _sniff_image(name: str, data: bytes) -> None:
    if (
        data.startswith(b"\x89PNG\r\n\x1a\n")
        or data.startswith(b"\xff\xd8\xff")
        or data.startswith((b"GIF87a", b"GIF89a"))
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
    ):
        return
    raise _fail(f"input image {name!r} is not a PNG, JPEG, WebP or GIF file")


def _decode_base64(name: str, text: str, limit: int) -> bytes:
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    text = "".join(text.split())
    if len(text) * 3 // 4 > limit + 3:
        raise _fail(
            f"input image {name!r} is larger than {limit} bytes (MAX_INPUT_IMAGE_BYTES); "
            "send a smaller image or an https URL"
        )
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(f"input image {name!r} is neither valid base64 nor an https URL") from exc
    if len(data) > limit:
        raise _fail(f"input image {name!r} is larger than {limit} bytes (MAX_INPUT_IMAGE_BYTES)")
    return data


def _download(name: str, url: str, limit: int) -> bytes:
    try:
        with requests.get(url, stream=True, timeout=(10, 30)) as answer:
            if answer.status_code != 200:
                raise _fail(f"input image {name!r}: {url} answered HTTP {answer.status_code}")
            declared = answer.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise _fail(
                    f"input image {name!r} at {url} is {declared} bytes, over the "
                    f"{limit}-byte limit (MAX_INPUT_IMAGE_BYTES)"
                )
            data = bytearray()
            for block in answer.iter_content(chunk_size=256 * 1024):
                data.extend(block)
                if len(data) > limit:
                    raise _fail(
                        f"input image {name!r} at {url} is over the {limit}-byte limit "
                        "(MAX_INPUT_IMAGE_BYTES)"
                    )
            return bytes(data)
    except requests.RequestException as exc:
        raise _fail(
            f"input image {name!r}: could not download {url}: {type(exc).__name__}"
        ) from exc


def fetch_images(entries: list[tuple[str, str]], settings: HandlerSettings) -> list[InputImage]:
    """Decode or download every input image, enforcing the size limit."""
    images: list[InputImage] = []
    for name, source in entries:
        lowered = source[:8].lower()
        if lowered.startswith("https://") or (
            settings.allow_http_urls and lowered.startswith("http://")
        ):
            data = _download(name, source, settings.max_image_bytes)
        elif lowered.startswith("http://"):
            raise _fail(f"input image {name!r}: only https URLs are fetched, got {source[:60]}")
        else:
            data = _decode_base64(name, source, settings.max_image_bytes)
        _sniff_image(name, data)
        images.append(InputImage(name, data))
    return images


# -- ComfyUI answers -----------------------------------------------------------------------
def _is_model_input(class_type: str, input_name: str) -> bool:
    return "Load" in class_type and input_name not in _NOT_MODEL_INPUTS


def _manifest_path() -> Path:
    override = os.environ.get("MODEL_MANIFEST", "").strip()
    return Path(override) if override else Path(__file__).resolve().parent.parent / "models.toml"


@lru_cache(maxsize=4)
def _groups_by_file(manifest: Path) -> dict[str, tuple[str, ...]]:
    try:
        data = tomllib.loads(manifest.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    found: dict[str, tuple[str, ...]] = {}
    for entry in data.get("model", []):
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            found[entry["path"].rsplit("/", 1)[-1]] = tuple(entry.get("groups", ()))
    return found


def _group_hint(filename: object) -> str:
    groups = _groups_by_file(_manifest_path()).get(str(filename).rsplit("/", 1)[-1])
    return f" (model group {' or '.join(groups)})" if groups else " (not in models.toml)"


def rejection_failure(error: PromptRejectedError, comfy: ComfyClient) -> JobFailureError:
    """Turn a 400 from ``POST /prompt`` into the failure a person can act on."""
    body = error.body
    raw_top = body.get("error")
    top: dict[str, Any] = raw_top if isinstance(raw_top, dict) else {}
    kind = str(top.get("type", ""))
    message = str(top.get("message", error))
    details = str(top.get("details", ""))
    if kind == "missing_node_type" or (kind == "invalid_prompt" and "does not exist" in message):
        extra = top.get("extra_info") or {}
        class_type = extra.get("class_type")
        if not class_type:
            found = re.search(r"node (\S+) does not exist", message)
            class_type = found.group(1) if found else "?"
        return JobFailureError(
            "missing_node",
            f"this worker's ComfyUI has no node type {class_type} ({details or 'workflow'}): "
            "the custom node is not installed in the image; add and pin it in "
            "image/nodes.toml or use a workflow without it",
        )
    missing: list[str] = []
    other: list[str] = []
    for node_id, entry in (body.get("node_errors") or {}).items():
        class_type = str(entry.get("class_type", "?"))
        for problem in entry.get("errors", []):
            extra = problem.get("extra_info") or {}
            input_name = str(extra.get("input_name", ""))
            if problem.get("type") == "value_not_in_list" and _is_model_input(
                class_type, input_name
            ):
                installed = comfy.choices(class_type, input_name)
                wanted = extra.get("received_value", problem.get("details", "?"))
                listing = ", ".join(installed) if installed else "none"
                missing.append(
                    f"node {node_id} ({class_type}) wants {input_name}={wanted!r}"
                    f"{_group_hint(wanted)}; installed: {listing}"
                )
            else:
                other.append(
                    f"node {node_id} ({class_type}): {problem.get('message')}: "
                    f"{problem.get('details')}"
                )
    if missing:
        return JobFailureError(
            "missing_model",
            "model not installed on this worker: "
            + "; ".join(missing)
            + ". Add the model's group to MODEL_GROUPS (image/models.toml) or place the file "
            "in the volume's models/<folder>/",
        )
    if other:
        return _fail("ComfyUI rejected the workflow: " + "; ".join(other))
    return _fail(f"ComfyUI rejected the workflow: {message}{': ' + details if details else ''}")


def execution_failure(result: RunResult) -> JobFailureError:
    """Turn an ``execution_error`` event into ``out_of_memory`` or ``comfy_error``."""
    data = result.error or {}
    text = str(data.get("exception_message", "")).strip()
    exc_type = str(data.get("exception_type", ""))
    where = f"node {data.get('node_id')} ({data.get('node_type')})"
    if "out of memory" in text.lower() or "OutOfMemory" in exc_type:
        return JobFailureError(
            "out_of_memory",
            f"the GPU ran out of memory in {where}: run on a larger GPU pool "
            "(48 GB or 80 GB class) or lower width, height, frames or batch size",
        )
    first_line = text.splitlines()[0] if text else "no message"
    return JobFailureError(
        "comfy_error", f"ComfyUI failed in {where}: {exc_type or 'error'}: {first_line[:500]}"
    )


def collect_outputs(entry: Mapping[str, Any]) -> list[OutputFile]:
    """Every saved file in a history entry: images, animated videos, VHS gifs, audio."""
    found: list[OutputFile] = []
    for node_id, ui in (entry.get("outputs") or {}).items():
        if not isinstance(ui, dict):
            continue
        animated = ui.get("animated") or []
        for key in ("images", "gifs", "video", "audio"):
            for index, item in enumerate(ui.get(key) or []):
                if not isinstance(item, dict) or "filename" not in item:
                    continue
                if item.get("type", "output") != "output":
                    continue  # previews and temp files are not results
                filename = str(item["filename"])
                kind: Kind
                if key == "audio":
                    kind = "audio"
                elif key in {"gifs", "video"} or (index < len(animated) and animated[index]):
                    kind = "video"
                else:
                    guessed = _content_type(filename)
                    kind = "video" if guessed.startswith("video/") else "image"
                found.append(
                    OutputFile(
                        node_id=str(node_id),
                        filename=filename,
                        subfolder=str(item.get("subfolder") or ""),
                        folder_type="output",
                        kind=kind,
                    )
                )
    return found


def _content_type(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    return (
        _CONTENT_TYPES.get(suffix)
        or mimetypes.guess_type(filename)[0]
        or ("application/octet-stream")
    )


# -- R2 ------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _s3(settings: R2Settings) -> S3Client:
    # Building a boto3 client costs tens of milliseconds; reuse one per settings value.
    return make_client(settings)


def _url(settings: R2Settings, client: S3Client, key: str, expiry: int) -> str:
    if settings.public_base_url:
        return f"{settings.public_base_url}/{quote(key)}"
    return client.generate_presigned_url(
        "get_object", Params={"Bucket": settings.bucket, "Key": key}, ExpiresIn=expiry
    )


def _upload_one(
    item: OutputFile,
    *,
    comfy_url: str,
    r2: R2Settings,
    key_root: str,
    expiry: int,
) -> dict[str, Any]:
    client = _s3(r2)
    relative = f"{item.subfolder}/{item.filename}" if item.subfolder else item.filename
    key = object_key(r2.prefix, f"{key_root}/{relative}")
    content_type = _content_type(item.filename)
    comfy = ComfyClient(comfy_url, session=requests.Session())
    with tempfile.SpooledTemporaryFile(max_size=MULTIPART_THRESHOLD) as buffer:
        try:
            size = comfy.download(item.filename, item.subfolder, item.folder_type, buffer)
        except ComfyError as exc:
            raise JobFailureError("comfy_error", f"could not read output: {exc}") from exc
        buffer.seek(0)
        try:
            _put(client, r2.bucket, key, buffer, size=size, content_type=content_type)
        except (BotoCoreError, ClientError) as exc:
            code = (
                exc.response.get("Error", {}).get("Code", "error")
                if isinstance(exc, ClientError)
                else type(exc).__name__
            )
            raise JobFailureError(
                "upload",
                f"could not store {relative} in R2 bucket {r2.bucket} ({code}); check "
                "R2_ENDPOINT, R2_BUCKET and the worker token's write permission",
            ) from exc
    return {
        "node_id": item.node_id,
        "filename": item.filename,
        "kind": item.kind,
        "key": key,
        "url": _url(r2, client, key, expiry),
        "bytes": size,
        "content_type": content_type,
    }


def _put(
    client: S3Client, bucket: str, key: str, body: IO[bytes], *, size: int, content_type: str
) -> None:
    if size < MULTIPART_THRESHOLD:
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    else:
        client.upload_fileobj(
            body,
            bucket,
            key,
            ExtraArgs={"ContentType": content_type},
            Config=transfer_config(),
        )


def remove_local_outputs(items: list[OutputFile], output_dir: Path | None) -> None:
    """Delete uploaded files from ComfyUI's local output folder (never outside it)."""
    if output_dir is None:
        return
    root = output_dir.resolve()
    for item in items:
        path = (root / item.subfolder / item.filename).resolve()
        if root in path.parents:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not delete uploaded output %s: %s", path, exc)


def upload_outputs(
    items: list[OutputFile],
    *,
    settings: HandlerSettings,
    r2: R2Settings,
    job_id: str,
) -> list[dict[str, Any]]:
    """Upload every output concurrently; return the contract's output records in order."""
    if not items:
        return []
    key_root = f"jobs/{_UNSAFE_KEY_CHARS.sub('_', job_id) or 'job'}"
    workers = max(1, min(settings.upload_concurrency, len(items)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload") as pool:
        futures = [
            pool.submit(
                _upload_one,
                item,
                comfy_url=settings.comfy_url,
                r2=r2,
                key_root=key_root,
                expiry=settings.url_expiry_s,
            )
            for item in items
        ]
        return [future.result() for future in futures]


# -- the job -------------------------------------------------------------------------------
def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _rename_inputs(graph: dict[str, Any], renamed: Mapping[str, str]) -> None:
    for node in graph.values():
        inputs = node.get("inputs", {})
        for name, value in inputs.items():
            if isinstance(value, str) and value in renamed:
                inputs[name] = renamed[value]


def _run(job: Mapping[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    job_id = str(job.get("id") or uuid.uuid4())
    settings = HandlerSettings.from_env()
    try:
        r2 = R2Settings.from_env()
    except R2ConfigError as exc:
        raise JobFailureError("upload", str(exc)) from exc
    request, entries = parse_input(job.get("input"), settings)
    extra_data = _comfy_org_extra_data(job.get("input"), settings)
    images = fetch_images(entries, settings)
    comfy = ComfyClient(settings.comfy_url, pid_file=settings.pid_file)
    try:
        waited = comfy.wait_until_ready(settings.ready_timeout_s)
        renamed: dict[str, str] = {}
        for image in images:
            stored = comfy.upload_image(image.name, image.data)
            if stored != image.name:
                renamed[image.name] = stored
        _rename_inputs(request.graph, renamed)
        prepared = time.monotonic()
        result = _execute(comfy, request.graph, settings, extra_data)
    except ComfyUnavailableError as exc:
        raise JobFailureError("comfy_error", str(exc), refresh=True) from exc
    except PromptRejectedError as exc:
        raise rejection_failure(exc, comfy) from exc
    except ComfyError as exc:
        raise JobFailureError("comfy_error", f"ComfyUI failed: {exc}") from exc
    if result.error is not None:
        raise execution_failure(result)
    if result.interrupted:
        raise JobFailureError("comfy_error", "the run was interrupted inside ComfyUI")
    try:
        entry = comfy.history(result.prompt_id)
    except ComfyUnavailableError as exc:
        raise JobFailureError("comfy_error", str(exc), refresh=True) from exc
    except ComfyError as exc:
        raise JobFailureError("comfy_error", f"could not read the results: {exc}") from exc
    items = collect_outputs(entry)
    if not items:
        raise JobFailureError(
            "comfy_error",
            "the workflow finished but saved no files: add a SaveImage, SaveVideo, "
            "VHS_VideoCombine (save_output true) or SaveAudio node",
        )
    upload_started = time.monotonic()
    outputs = upload_outputs(items, settings=settings, r2=r2, job_id=job_id)
    done = time.monotonic()
    remove_local_outputs(items, settings.output_dir)
    queue_ms = _ms((result.started_at or result.queued_at) - result.queued_at)
    run_ms = _ms((result.finished_at or upload_started) - (result.started_at or result.queued_at))
    return {
        "outputs": outputs,
        "prompt_id": result.prompt_id,
        "timings": {
            "queue_ms": queue_ms,
            "run_ms": run_ms,
            "upload_ms": _ms(done - upload_started),
            "comfy_wait_ms": _ms(waited),
            "prepare_ms": _ms(prepared - started),
            "total_ms": _ms(done - started),
        },
    }


def _comfy_org_extra_data(raw: Any, settings: HandlerSettings) -> dict[str, str] | None:
    """``extra_data`` carrying the job's ``comfy_org_api_key`` (else ``COMFY_ORG_API_KEY``).

    ComfyUI hands ``api_key_comfy_org`` to API nodes and keeps it out of its history.
    """
    key = raw.get("comfy_org_api_key") if isinstance(raw, dict) else None
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise _fail("input.comfy_org_api_key must be a non-empty string (a Comfy.org API key)")
    key = key.strip() if key else settings.comfy_org_api_key
    return {"api_key_comfy_org": key} if key else None


def _execute(
    comfy: ComfyClient,
    graph: dict[str, Any],
    settings: HandlerSettings,
    extra_data: dict[str, str] | None = None,
) -> RunResult:
    client_id = uuid.uuid4().hex
    prompt_id = str(uuid.uuid4())
    ws = comfy.connect(client_id)  # before POST /prompt: events go only to this client
    try:
        comfy.queue_prompt(graph, client_id=client_id, prompt_id=prompt_id, extra_data=extra_data)
        queued_at = time.monotonic()
        deadline = queued_at + settings.job_timeout_s
        try:
            return comfy.follow(ws, prompt_id, deadline=deadline, queued_at=queued_at)
        except ExecutionTimeoutError:
            comfy.interrupt(prompt_id)
            stopped = True
            try:
                comfy.follow(ws, prompt_id, deadline=time.monotonic() + settings.interrupt_grace_s)
            except ComfyError:
                stopped = False
            raise JobFailureError(
                "timeout",
                f"ComfyUI did not finish within JOB_TIMEOUT_S={settings.job_timeout_s:g} s; "
                "the run was interrupted. Raise JOB_TIMEOUT_S or lower steps, frames or size",
                refresh=not stopped,
            ) from None
    finally:
        ws.close()


def handler(job: dict[str, Any]) -> dict[str, Any]:
    """RunPod entry point: run one job; return the outputs or ``{"error", "error_type"}``."""
    job_id = str(job.get("id", "?"))
    try:
        output = _run(job)
    except JobFailureError as failure:
        log.warning("job %s failed (%s): %s", job_id, failure.error_type, failure.message)
        return failure.as_output()
    log.info(
        "job %s done: %d output(s), timings %s", job_id, len(output["outputs"]), output["timings"]
    )
    return output


def main() -> None:
    """Start the RunPod serverless worker loop with :func:`handler`."""
    import runpod  # noqa: PLC0415 - the SDK starts threads and reads argv; only load it here

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    runpod.serverless.start({"handler": handler})


if __name__ == "__main__":
    main()
