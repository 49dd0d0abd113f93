"""A ComfyUI double on loopback: real HTTP and WebSocket, faithful to the reference.

Owns: the routes a worker talks to (``/system_stats``, ``/prompt``, ``/ws``, ``/history``,
``/view``, ``/upload/image``, ``/object_info``, ``/models``, ``/queue``, ``/interrupt``,
``/free``, all also under ``/api``), prompt validation with the error bodies of
``../shared/reference/comfyui-api.md`` (``missing_node_type`` or the older
``invalid_prompt`` wording, ``prompt_no_outputs``, ``value_not_in_list`` from the model lists
it is given, ``required_input_missing``, ``bad_linked_input``, ``return_type_mismatch``, range
and type errors, ``LoadImage``'s custom validation), execution events in the real order and
only to the client that queued the prompt, output files written under ``output_dir`` and
served by ``/view``, and a history entry written before the final ``executing {node: null}``.

Faults (``double.fault = Fault.X``, read when a prompt starts executing): an
``execution_error``, a GPU out-of-memory error, a hang that only ``/interrupt`` ends, a
stuck run that ignores even that, and a crash (process gone, sockets reset, port closed).
``start_delay`` makes the server come up late (the port is bound but refuses connections
until then), and :meth:`crash` kills it at any time. A stand-in process (``sleep``) plays
ComfyUI's PID: its id is written to ``pid_file`` and it dies with a crash, so a worker can
tell "still booting" from "dead".

The execution cache works as ComfyUI's default ("classic") cache in
``comfy_execution/caching.py``: a node's key is its class, its ``IS_CHANGED`` value (for
``LoadImage``/``LoadAudio`` the file's sha256) and its inputs with links replaced by the keys of
the nodes they come from (an input the class does not declare counts too, and is otherwise
ignored, as in ``execution.py``); entries the next prompt does not use are dropped. A prompt
identical to an earlier one lists its nodes in ``execution_cached``, runs none of them
(``executed`` carries the cached UI output) and its history names the files the earlier run
wrote. File inputs resolve as ComfyUI's annotated-path helpers do (absolute paths, ``..`` and
`` [input]``/`` [output]``/`` [temp]`` are accepted if the file exists), and a save node's
``filename_prefix`` that leaves the output folder fails the node with ComfyUI's "Saving
image outside the output folder is not allowed." execution error. A save node's
``filename_prefix`` may be linked from a ``PrimitiveString``.

Model folders: loader lists are the ``models`` given plus, with ``models_dir``, the files on
disk under ``<models_dir>/<folder>/`` (subfolders and ComfyUI's model extensions, re-read at
every prompt like ``folder_paths``' mtime-checked cache), and a loader that runs reads such a
file as ``load_torch_file`` does: a ``.safetensors`` whose header ``safe_open`` refuses
(truncated, not safetensors) fails the node. ``progress`` events come per sampler step and
per upscale tile, as ComfyUI's progress-bar hook sends them.

Image sizes are followed where the double can know them: a loaded PNG and an ``EmptyImage``
have theirs, an upscale model multiplies by the factor its file name declares (``x4plus``)
and ``ImageScaleBy`` by ``scale_by`` (``round(side * scale_by)``, as nodes.py); a saved PNG
has the size of the image it saves, or 8x8 when the double does not know it.

Deliberately not emulated: real image content (outputs are small valid solid-colour PNGs and
MP4/FLAC headers, padded to ``output_bytes`` when set), previews other than one binary frame
per sampler,
partial execution of some outputs when others fail validation (every invalid output fails
the prompt here).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import hashlib
import json
import os
import re
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN"})
SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc", "lcm"]
SCHEDULERS = ["simple", "normal", "karras", "exponential", "sgm_uniform", "beta"]
UINT64_MAX = 0xFFFFFFFFFFFFFFFF


class Fault(enum.StrEnum):
    """What the next prompt does when it runs."""

    OK = "ok"
    EXECUTION_ERROR = "execution_error"
    OUT_OF_MEMORY = "out_of_memory"
    HANG = "hang"
    """Runs until ``/interrupt``."""
    STUCK = "stuck"
    """Ignores ``/interrupt`` too (a CUDA kernel that never returns)."""
    CRASH = "crash"


@dataclass(frozen=True)
class Inp:
    """One input of a node class: a link type, a widget type, or a combo."""

    type: str
    """``MODEL``/``IMAGE``/... for links, ``INT``/``FLOAT``/``STRING``/``BOOLEAN`` for
    widgets, ``COMBO`` for choice lists."""
    options: tuple[str | int, ...] = ()
    """Fixed choices of a combo (ints where the node lists numbers, e.g. ``num_steps``)."""
    folder: str | None = None
    """Model folder whose installed files are the combo's choices."""
    input_files: bool = False
    """Choices are the files in the input folder (``LoadImage``, ``LoadAudio``)."""
    min: float | None = None
    max: float | None = None
    default: Any = None


@dataclass(frozen=True)
class NodeClass:
    """A node class as ``/object_info`` describes it."""

    required: Mapping[str, Inp]
    outputs: tuple[str, ...] = ()
    optional: Mapping[str, Inp] = field(default_factory=dict)
    output_node: bool = False
    category: str = "utils"
    v3: bool = False
    """Newer (V3 schema) nodes render combos as ``["COMBO", {"options": [...]}]``."""


def _int(lo: float = -UINT64_MAX, hi: float = UINT64_MAX, default: int = 0) -> Inp:
    return Inp("INT", min=lo, max=hi, default=default)


def _float(lo: float = -1e9, hi: float = 1e9, default: float = 0.0) -> Inp:
    return Inp("FLOAT", min=lo, max=hi, default=default)


def _combo(*options: str) -> Inp:
    return Inp("COMBO", options=options)


def _models(folder: str) -> Inp:
    return Inp("COMBO", folder=folder)


_STR = Inp("STRING", default="")
_BOOL = Inp("BOOLEAN", default=False)
_DIM = _int(16, 16384, 1024)

#: Core ComfyUI nodes (pinned version) and the custom-node classes the workflows may use.
NODE_CLASSES: dict[str, NodeClass] = {
    "CheckpointLoaderSimple": NodeClass(
        {"ckpt_name": _models("checkpoints")}, ("MODEL", "CLIP", "VAE"), category="loaders"
    ),
    "UNETLoader": NodeClass(
        {
            "unet_name": _models("diffusion_models"),
            "weight_dtype": _combo("default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"),
        },
        ("MODEL",),
        category="advanced/loaders",
    ),
    "CLIPLoader": NodeClass(
        {
            "clip_name": _models("text_encoders"),
            "type": _combo("stable_diffusion", "stable_cascade", "sd3", "wan", "ltxv"),
        },
        ("CLIP",),
        optional={"device": _combo("default", "cpu")},
        category="advanced/loaders",
    ),
    "VAELoader": NodeClass({"vae_name": _models("vae")}, ("VAE",), category="loaders"),
    "LoraLoaderModelOnly": NodeClass(
        {
            "model": Inp("MODEL"),
            "lora_name": _models("loras"),
            "strength_model": _float(-100, 100, 1.0),
        },
        ("MODEL",),
        category="loaders",
    ),
    "LoadBackgroundRemovalModel": NodeClass(
        {"bg_removal_name": _models("background_removal")},
        ("BACKGROUND_REMOVAL",),
        category="loaders",
        v3=True,
    ),
    "RemoveBackground": NodeClass(
        {"image": Inp("IMAGE"), "bg_removal_model": Inp("BACKGROUND_REMOVAL")},
        ("MASK",),
        category="image/background removal",
        v3=True,
    ),
    "InvertMask": NodeClass({"mask": Inp("MASK")}, ("MASK",), category="mask"),
    "JoinImageWithAlpha": NodeClass(
        {"image": Inp("IMAGE"), "alpha": Inp("MASK")}, ("IMAGE",), category="mask/compositing"
    ),
    "CLIPTextEncode": NodeClass(
        {"text": _STR, "clip": Inp("CLIP")}, ("CONDITIONING",), category="conditioning"
    ),
    "FluxGuidance": NodeClass(
        {"conditioning": Inp("CONDITIONING"), "guidance": _float(0, 100, 3.5)},
        ("CONDITIONING",),
        category="advanced/conditioning/flux",
    ),
    "ModelSamplingSD3": NodeClass(
        {"model": Inp("MODEL"), "shift": _float(0, 100, 3.0)},
        ("MODEL",),
        category="advanced/model",
    ),
    "EmptySD3LatentImage": NodeClass(
        {"width": _DIM, "height": _DIM, "batch_size": _int(1, 4096, 1)},
        ("LATENT",),
        category="latent/sd3",
    ),
    "EmptyHunyuanLatentVideo": NodeClass(
        {
            "width": _DIM,
            "height": _DIM,
            "length": _int(1, 16384, 25),
            "batch_size": _int(1, 4096, 1),
        },
        ("LATENT",),
        category="latent/video",
    ),
    "KSampler": NodeClass(
        {
            "model": Inp("MODEL"),
            "seed": _int(0, UINT64_MAX),
            "steps": _int(1, 10000, 20),
            "cfg": _float(0, 100, 8.0),
            "sampler_name": _combo(*SAMPLERS),
            "scheduler": _combo(*SCHEDULERS),
            "positive": Inp("CONDITIONING"),
            "negative": Inp("CONDITIONING"),
            "latent_image": Inp("LATENT"),
            "denoise": _float(0, 1, 1.0),
        },
        ("LATENT",),
        category="sampling",
    ),
    "KSamplerAdvanced": NodeClass(
        {
            "model": Inp("MODEL"),
            "add_noise": _combo("enable", "disable"),
            "noise_seed": _int(0, UINT64_MAX),
            "steps": _int(1, 10000, 20),
            "cfg": _float(0, 100, 8.0),
            "sampler_name": _combo(*SAMPLERS),
            "scheduler": _combo(*SCHEDULERS),
            "positive": Inp("CONDITIONING"),
            "negative": Inp("CONDITIONING"),
            "latent_image": Inp("LATENT"),
            "start_at_step": _int(0, 10000, 0),
            "end_at_step": _int(0, 10000, 10000),
            "return_with_leftover_noise": _combo("disable", "enable"),
        },
        ("LATENT",),
        category="sampling",
    ),
    "VAEDecode": NodeClass(
        {"samples": Inp("LATENT"), "vae": Inp("VAE")}, ("IMAGE",), category="latent"
    ),
    "VAEEncode": NodeClass(
        {"pixels": Inp("IMAGE"), "vae": Inp("VAE")}, ("LATENT",), category="latent"
    ),
    "LoadImage": NodeClass(
        {"image": Inp("COMBO", input_files=True)}, ("IMAGE", "MASK"), category="image"
    ),
    "EmptyImage": NodeClass(
        {
            "width": _int(1, 16384, 512),
            "height": _int(1, 16384, 512),
            "batch_size": _int(1, 4096, 1),
            "color": _int(0, 0xFFFFFF, 0),
        },
        ("IMAGE",),
        category="image",
    ),
    "ImageInvert": NodeClass({"image": Inp("IMAGE")}, ("IMAGE",), category="image"),
    "ImageScaleToTotalPixels": NodeClass(
        {
            "image": Inp("IMAGE"),
            "upscale_method": _combo("nearest-exact", "bilinear", "area", "bicubic", "lanczos"),
            "megapixels": _float(0.01, 16.0, 1.0),
            "resolution_steps": _int(1, 256, 1),
        },
        ("IMAGE",),
        category="image/upscaling",
        v3=True,
    ),
    "ImageScaleBy": NodeClass(
        {
            "image": Inp("IMAGE"),
            "upscale_method": _combo("nearest-exact", "bilinear", "area", "bicubic", "lanczos"),
            "scale_by": _float(0.01, 8.0, 1.0),
        },
        ("IMAGE",),
        category="image/upscaling",
    ),
    "LatentFromBatch": NodeClass(
        {
            "samples": Inp("LATENT"),
            "batch_index": _int(-16384, 16384, 0),
            "length": _int(1, 64, 1),
        },
        ("LATENT",),
        category="model/latent/batch",
    ),
    "UpscaleModelLoader": NodeClass(
        {"model_name": _models("upscale_models")},
        ("UPSCALE_MODEL",),
        category="model/loaders",
        v3=True,
    ),
    "ImageUpscaleWithModel": NodeClass(
        {"upscale_model": Inp("UPSCALE_MODEL"), "image": Inp("IMAGE")},
        ("IMAGE",),
        category="image/upscaling",
        v3=True,
    ),
    # comfy_extras/nodes_primitive.py (V3, read from the pinned source): returns its value;
    # lets a graph link a string widget such as a save node's filename_prefix.
    "PrimitiveString": NodeClass(
        {"value": Inp("STRING", default="")},
        ("STRING",),
        category="utilities/primitive",
        v3=True,
    ),
    "SaveImage": NodeClass(
        {"images": Inp("IMAGE"), "filename_prefix": Inp("STRING", default="ComfyUI")},
        output_node=True,
        category="image",
    ),
    "PreviewImage": NodeClass({"images": Inp("IMAGE")}, output_node=True, category="image"),
    "CreateVideo": NodeClass(
        {"images": Inp("IMAGE"), "fps": _float(1, 120, 30)},
        ("VIDEO",),
        optional={"audio": Inp("AUDIO")},
        category="image/video",
        v3=True,
    ),
    "SaveVideo": NodeClass(
        {
            "video": Inp("VIDEO"),
            "filename_prefix": Inp("STRING", default="video/ComfyUI"),
            "format": _combo("auto", "mp4"),
            "codec": _combo("auto", "h264"),
        },
        output_node=True,
        category="image/video",
        v3=True,
    ),
    "LoadAudio": NodeClass({"audio": Inp("COMBO", input_files=True)}, ("AUDIO",), category="audio"),
    "SaveAudio": NodeClass(
        {"audio": Inp("AUDIO"), "filename_prefix": Inp("STRING", default="audio/ComfyUI")},
        output_node=True,
        category="audio",
    ),
    # Custom nodes pinned in the image (only what the workflows and tests use).
    "VHS_VideoCombine": NodeClass(
        {
            "images": Inp("IMAGE"),
            "frame_rate": _float(1, 240, 8),
            "loop_count": _int(0, 100, 0),
            "filename_prefix": Inp("STRING", default="AnimateDiff"),
            "format": _combo("image/gif", "image/webp", "video/h264-mp4", "video/webm"),
            "pingpong": _BOOL,
            "save_output": _BOOL,
        },
        output_node=True,
        optional={"audio": Inp("AUDIO")},
        category="Video Helper Suite 🎥🅥🅗🅢",
    ),
    # Comfyui_turbodiffusion (the wan22_turbo_* templates). The real VAE loader lists only
    # files with "vae" in their name; the template's wan_2.1_vae.safetensors has it.
    "TurboWanModelLoader": NodeClass(
        {"model_name": _models("diffusion_models")},
        ("MODEL",),
        optional={
            "attention_type": _combo("original", "sla", "sagesla"),
            "sla_topk": _float(0.01, 1.0, 0.1),
            "offload_mode": _combo("comfy_native", "layerwise_gpu", "cpu_only"),
        },
        category="loaders",
    ),
    "TurboWanVAELoader": NodeClass(
        {"vae_name": _models("vae")}, ("VAE",), category="video/turbodiffusion"
    ),
    "TurboDiffusionI2VSampler": NodeClass(
        {
            "high_noise_model": Inp("MODEL"),
            "low_noise_model": Inp("MODEL"),
            "conditioning": Inp("CONDITIONING"),
            "vae": Inp("VAE"),
            "image": Inp("IMAGE"),
            "num_frames": _int(9, 241, 77),
            "num_steps": Inp("COMBO", options=(1, 2, 3, 4)),
            "resolution": _combo("480", "480p", "512", "720", "720p", "custom"),
            "aspect_ratio": _combo("16:9", "9:16", "4:3", "3:4", "1:1"),
            "boundary": _float(0.0, 1.0, 0.9),
            "sigma_max": _float(1.0, 1000.0, 200.0),
            "seed": _int(0, UINT64_MAX, 0),
            "use_ode": _BOOL,
            "width": _int(64, 2048, 480),
            "height": _int(64, 2048, 480),
        },
        ("IMAGE",),
        category="video/turbodiffusion",
    ),
}

_SAMPLER_CLASSES = frozenset({"KSampler", "KSamplerAdvanced"})
#: ``folder_paths.supported_pt_extensions``: the files a model folder on disk lists.
MODEL_EXTENSIONS = frozenset(
    {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
)
#: Tiles ImageUpscaleWithModel reports progress for (512 px tiles of a small test image).
UPSCALE_TILES = 4


def safetensors_problem(path: Path) -> str | None:  # noqa: PLR0911 - one per refusal
    """What ``safetensors.safe_open`` would refuse about ``path`` (None: it loads).

    The format: an 8-byte little-endian header length N, N bytes of JSON mapping tensor names
    to ``{dtype, shape, data_offsets: [begin, end]}`` (plus an optional ``__metadata__``),
    then the tensor bytes, which every ``end`` must lie within.
    """
    data = path.read_bytes()
    if len(data) < 8:
        return "HeaderTooSmall"
    length = int.from_bytes(data[:8], "little")
    if length > 100_000_000 or 8 + length > len(data):
        return "HeaderTooLarge"
    try:
        header = json.loads(data[8 : 8 + length])
    except (ValueError, RecursionError):
        return "InvalidHeaderDeserialization"
    if not isinstance(header, dict):
        return "InvalidHeaderDeserialization"
    body = len(data) - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(o) is int for o in offsets)  # usize: no strings, floats or bools
            and 0 <= offsets[0] <= offsets[1]
        ):
            return "InvalidHeaderDeserialization"
        if offsets[1] > body:
            return "MetadataIncompleteBuffer"
    return None


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny_png(
    rgb: tuple[int, int, int] = (200, 30, 30), size: int = 8, *, height: int | None = None
) -> bytes:
    """A valid solid-colour PNG, ``size`` pixels wide and ``height`` (default ``size``) high."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    height = size if height is None else height
    row = b"\x00" + bytes(rgb) * size
    header = struct.pack(">IIBBBBB", size, height, 8, 2, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR; None for anything else."""
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def upscale_factor(model_name: str) -> int | None:
    """The scale an upscale model file declares in its name (``RealESRGAN_x4plus``,
    ``4x-UltraSharp``); None when it names none. Spandrel reads it from the weights; the
    double, which has none, from the name."""
    found = re.search(r"(?i)(?:^|[^a-z0-9])(?:x([1-8])|([1-8])x)(?![0-9])", model_name)
    return None if found is None else int(found.group(1) or found.group(2))


def _is_uuid(value: object) -> bool:
    try:
        return str(uuid.UUID(str(value))) == str(value)
    except ValueError:
        return False


def _padded(head: bytes, size: int | None) -> bytes:
    if size is None or size <= len(head):
        return head
    return head + b"\x00" * (size - len(head))


@dataclass
class _Prompt:
    prompt_id: str
    number: int
    graph: dict[str, Any]
    client_id: str | None
    extra_data: dict[str, Any]
    outputs: list[str]


#: What a node made, kept by the execution cache: its UI output (None: none), its batch size
#: and the (width, height) of its image (None: not tracked).
_Made = tuple[dict[str, Any] | None, int, tuple[int, int] | None]


@dataclass
class _Run:
    """One prompt's execution: what each node made, the UI outputs, the recorded events."""

    prompt: _Prompt
    batches: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    ui_outputs: dict[str, Any] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    messages: list[list[Any]] = field(default_factory=list)

    @property
    def pid(self) -> str:
        """The prompt id."""
        return self.prompt.prompt_id

    def made(self, node_id: str) -> _Made:
        """What ``node_id`` made, as the cache keeps it."""
        return (self.ui_outputs.get(node_id), self.batches[node_id], self.sizes.get(node_id))


class _InterruptedError(Exception):
    pass


class _CrashedError(Exception):
    """The double crashed while a prompt ran: nothing more is sent or recorded."""


class _NodeFailedError(Exception):
    """A node raised while executing (ComfyUI reports it as ``execution_error``)."""


class ComfyUIDouble:
    """A ComfyUI server on 127.0.0.1; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        models: Mapping[str, Sequence[str]] | None = None,
        models_dir: Path | None = None,
        output_dir: Path | None = None,
        input_dir: Path | None = None,
        fault: Fault = Fault.OK,
        start_delay: float = 0.0,
        node_seconds: float = 0.0,
        output_bytes: int | None = None,
        missing_node_error: str = "missing_node_type",
        pid_file: Path | None = None,
    ) -> None:
        self.models: dict[str, list[str]] = {k: list(v) for k, v in (models or {}).items()}
        #: A models folder on disk, like an ``extra_model_paths`` root: the files under
        #: ``<folder>/`` (subfolders included) are listed next to ``models`` and read when a
        #: loader runs, so a file that appears later is seen at the next prompt.
        self.models_dir = models_dir
        #: (folder, name, sha256) of every file from ``models_dir`` a loader read.
        self.loaded_files: list[tuple[str, str, str]] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="comfyui-double-")
        root = Path(self._tmp.name)
        self.output_dir = output_dir or root / "output"
        self.input_dir = input_dir or root / "input"
        self.temp_dir = root / "temp"
        self.pid_file = pid_file or root / "comfyui.pid"
        for folder in (self.output_dir, self.input_dir, self.temp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.fault = fault
        self.start_delay = start_delay
        self.node_seconds = node_seconds
        self.output_bytes = output_bytes
        if missing_node_error not in {"missing_node_type", "invalid_prompt"}:
            raise ValueError(f"unknown missing_node_error {missing_node_error!r}")
        self.missing_node_error = missing_node_error
        #: Every accepted prompt body, in order (for assertions).
        self.prompts: list[dict[str, Any]] = []
        #: Every ``/upload/image`` answer, in order.
        self.uploads: list[dict[str, str]] = []
        self.interrupts = 0
        self.crashed = False
        self._sock: socket.socket | None = None
        self._url: str | None = None
        #: Port to bind (0: any free port).
        self.bind_port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._transports: list[asyncio.BaseTransport] = []
        self._history: dict[str, dict[str, Any]] = {}
        self._queue: asyncio.Queue[_Prompt] | None = None
        self._pending: list[_Prompt] = []
        self._running: _Prompt | None = None
        self._interrupt: asyncio.Event | None = None
        self._numbers = 0
        # Execution cache: node signature -> what the node made.
        self._cache: dict[str, _Made] = {}
        self._ready = threading.Event()
        self._worker_task: asyncio.Task[None] | None = None
        self._serve_future: Future[None] | None = None

    # -- life cycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        if self._url is None:
            raise RuntimeError("ComfyUIDouble is not started")
        return self._url

    @property
    def pid(self) -> int:
        """PID of the stand-in process that plays ComfyUI."""
        if self._process is None:
            raise RuntimeError("ComfyUIDouble is not started")
        return self._process.pid

    def start(self) -> ComfyUIDouble:
        """Bind the port, start the stand-in process, and serve (after ``start_delay``)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.bind_port))  # bound, not listening: refused
        except OSError:
            sock.close()
            raise
        self._sock = sock
        # Only after the bind, and detached from the caller's stdio: a failed start leaves no
        # process behind that would hold the caller's output pipe open.
        self._process = subprocess.Popen(
            ["sleep", "86400"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pid_file.write_text(f"{self._process.pid}\n")
        host, port = sock.getsockname()[:2]
        self._url = f"http://{host}:{port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._serve_future = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        if self.start_delay <= 0:
            self._serve_future.result(timeout=10)
        return self

    async def _serve(self) -> None:
        self._queue = asyncio.Queue()
        self._interrupt = asyncio.Event()
        self._worker_task = asyncio.get_running_loop().create_task(self._worker())
        if self.start_delay > 0:
            await asyncio.sleep(self.start_delay)
        if self.crashed or self._sock is None:
            return
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for prefix in ("", "/api"):
            app.router.add_get(prefix + "/system_stats", self._system_stats)
            app.router.add_post(prefix + "/prompt", self._post_prompt)
            app.router.add_get(prefix + "/prompt", self._get_prompt)
            app.router.add_get(prefix + "/ws", self._ws)
            app.router.add_get(prefix + "/history", self._history_all)
            app.router.add_get(prefix + "/history/{prompt_id}", self._history_one)
            app.router.add_get(prefix + "/view", self._view)
            app.router.add_post(prefix + "/upload/image", self._upload_image)
            app.router.add_get(prefix + "/object_info", self._object_info_all)
            app.router.add_get(prefix + "/object_info/{node_class}", self._object_info_one)
            app.router.add_get(prefix + "/models", self._model_folders)
            app.router.add_get(prefix + "/models/{folder}", self._model_files)
            app.router.add_get(prefix + "/queue", self._get_queue)
            app.router.add_post(prefix + "/queue", self._post_queue)
            app.router.add_post(prefix + "/interrupt", self._post_interrupt)
            app.router.add_post(prefix + "/free", self._post_free)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        self._sock.listen(128)
        site = web.SockSite(self._runner, self._sock)
        await site.start()
        self._ready.set()

    def wait_until_serving(self, timeout: float = 10.0) -> None:
        """Block until the HTTP server accepts connections."""
        if not self._ready.wait(timeout):
            raise TimeoutError("ComfyUIDouble did not start serving")

    def crash(self) -> None:
        """Kill ComfyUI: the process dies, open sockets are reset, the port refuses."""
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._crash(), self._loop).result(timeout=10)

    async def _crash(self) -> None:
        if self.crashed:
            return
        self.crashed = True
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        for transport in self._transports:
            transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._sock is not None:
            self._sock.close()

    def stop(self) -> None:
        """Shut everything down and remove the temporary folders."""
        if self._loop is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._loop.close()
            self._loop = None
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._tmp.cleanup()

    async def _stop(self) -> None:
        if self._serve_future is not None:
            self._serve_future.cancel()
        if self._worker_task is not None:
            self._worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker_task
        for ws in list(self._sockets.values()):
            with contextlib.suppress(Exception):
                await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> ComfyUIDouble:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def history(self) -> dict[str, dict[str, Any]]:
        """A copy of the history (prompt id -> entry)."""
        return json.loads(json.dumps(self._history))

    # -- routes -------------------------------------------------------------------------
    async def _system_stats(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "system": {
                    "os": "posix",
                    "ram_total": 64 * 2**30,
                    "ram_free": 48 * 2**30,
                    "comfyui_version": "0.3.99-double",
                    "python_version": "3.12.3",
                    "pytorch_version": "2.8.0+cu128",
                    "embedded_python": False,
                    "argv": ["main.py", "--listen", "127.0.0.1", "--port", "8188"],
                },
                "devices": [
                    {
                        "name": "cuda:0 NVIDIA L40S : cudaMallocAsync",
                        "type": "cuda",
                        "index": 0,
                        "vram_total": 48 * 2**30,
                        "vram_free": 47 * 2**30,
                        "torch_vram_total": 0,
                        "torch_vram_free": 0,
                    }
                ],
            }
        )

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        if request.transport is not None:
            self._transports.append(request.transport)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self._sockets[sid] = ws
        try:
            await ws.send_json(
                {
                    "type": "status",
                    "data": {
                        "status": {"exec_info": {"queue_remaining": self._remaining()}},
                        "sid": sid,
                    },
                }
            )
            async for message in ws:
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            if self._sockets.get(sid) is ws:
                del self._sockets[sid]
        return ws

    async def _post_prompt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"error": "invalid JSON"}, status=400)
        if not isinstance(body, dict) or "prompt" not in body:
            return self._error(400, "no_prompt", "No prompt provided", "No prompt provided")
        prompt_id = body.get("prompt_id") or str(uuid.uuid4())
        if not _is_uuid(prompt_id):
            return self._error(
                400, "invalid_prompt_id", "Invalid prompt_id", f"{prompt_id} is not a uuid"
            )
        graph = body["prompt"]
        if not isinstance(graph, dict):
            return self._error(400, "invalid_prompt", "Invalid prompt", "prompt is not an object")
        problem, outputs, node_errors = self._validate(graph)
        if problem is not None:
            return web.json_response({"error": problem, "node_errors": node_errors}, status=400)
        self._numbers += 1
        # Like ComfyUI's server.py: Comfy.org credentials go to the run, never into history.
        extra_data = dict(body.get("extra_data") or {})
        for key in ("auth_token_comfy_org", "api_key_comfy_org"):
            extra_data.pop(key, None)
        queued = _Prompt(
            prompt_id=str(prompt_id),
            number=self._numbers,
            graph=graph,
            client_id=body.get("client_id"),
            extra_data=extra_data,
            outputs=outputs,
        )
        self.prompts.append(body)
        self._pending.append(queued)
        assert self._queue is not None
        await self._queue.put(queued)
        await self._broadcast_status()
        return web.json_response(
            {"prompt_id": queued.prompt_id, "number": queued.number, "node_errors": {}}
        )

    async def _get_prompt(self, _: web.Request) -> web.Response:
        return web.json_response({"exec_info": {"queue_remaining": self._remaining()}})

    async def _history_all(self, _: web.Request) -> web.Response:
        return web.json_response(self._history)

    async def _history_one(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self._history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def _view(self, request: web.Request) -> web.StreamResponse:
        filename = request.query.get("filename")
        if not filename:
            return web.Response(status=400)
        folder_type = request.query.get("type", "output")
        subfolder = request.query.get("subfolder", "")
        if filename.startswith("/") or ".." in filename:
            return web.Response(status=400)
        roots = {"output": self.output_dir, "input": self.input_dir, "temp": self.temp_dir}
        if folder_type not in roots:
            return web.Response(status=400)
        root = roots[folder_type].resolve()
        path = (root / subfolder / filename).resolve()
        if root not in path.parents:
            return web.Response(status=403)
        if not path.is_file():
            return web.Response(status=404)
        return web.FileResponse(path, headers={"Content-Disposition": f'filename="{filename}"'})

    async def _upload_image(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            return web.Response(status=400)
        fields: dict[str, str] = {}
        filename: str | None = None
        data = b""
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if part.name == "image":
                filename = part.filename
                data = await part.read()
            else:
                fields[part.name] = (await part.read()).decode()
        if not filename:
            return web.Response(status=400)
        folder_type = fields.get("type", "input") or "input"
        roots = {"output": self.output_dir, "input": self.input_dir, "temp": self.temp_dir}
        if folder_type not in roots:
            return web.Response(status=400)
        subfolder = fields.get("subfolder", "")
        folder = (roots[folder_type] / subfolder).resolve()
        if roots[folder_type].resolve() not in [folder, *folder.parents]:
            return web.Response(status=400)
        folder.mkdir(parents=True, exist_ok=True)
        name = Path(filename).name
        if fields.get("overwrite", "").lower() not in {"true", "1"}:
            stem, suffix = Path(name).stem, Path(name).suffix
            counter = 1
            while (folder / name).exists():
                name = f"{stem} ({counter}){suffix}"
                counter += 1
        (folder / name).write_bytes(data)
        answer = {"name": name, "subfolder": subfolder, "type": folder_type}
        self.uploads.append(answer)
        return web.json_response(answer)

    async def _object_info_all(self, _: web.Request) -> web.Response:
        return web.json_response({name: self._node_info(name) for name in NODE_CLASSES})

    async def _object_info_one(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        return web.json_response({name: self._node_info(name)} if name in NODE_CLASSES else {})

    async def _model_folders(self, _: web.Request) -> web.Response:
        folders = {i.folder for n in NODE_CLASSES.values() for i in n.required.values()}
        return web.json_response(sorted(f for f in folders | set(self.models) if f))

    async def _model_files(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        known = {i.folder for n in NODE_CLASSES.values() for i in n.required.values()}
        if folder not in known and folder not in self.models:
            return web.Response(status=404)
        return web.json_response(self._installed(folder))

    def _disk_file(self, folder: str, name: str) -> Path | None:
        if self.models_dir is None:
            return None
        root = (self.models_dir / folder).resolve()
        path = (root / name).resolve()
        return path if root in path.parents and path.is_file() else None

    def _installed(self, folder: str) -> list[str]:
        """Files a loader of ``folder`` lists: the given names plus what is on disk."""
        names = set(self.models.get(folder, []))
        if self.models_dir is not None and (self.models_dir / folder).is_dir():
            root = self.models_dir / folder
            for dirpath, _subdirs, filenames in os.walk(root, followlinks=True):
                for filename in filenames:
                    if Path(filename).suffix.lower() in MODEL_EXTENSIONS:
                        relative = Path(dirpath, filename).relative_to(root)
                        names.add(relative.as_posix())
        return sorted(names)

    async def _get_queue(self, _: web.Request) -> web.Response:
        def row(p: _Prompt) -> list[Any]:
            return [p.number, p.prompt_id, p.graph, p.extra_data, p.outputs]

        running = [row(self._running)] if self._running else []
        return web.json_response(
            {"queue_running": running, "queue_pending": [row(p) for p in self._pending]}
        )

    async def _post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self._pending.clear()
        for prompt_id in body.get("delete", []):
            self._pending[:] = [p for p in self._pending if p.prompt_id != prompt_id]
        await self._broadcast_status()
        return web.Response(status=200)

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {}
        if request.can_read_body:
            with contextlib.suppress(json.JSONDecodeError):
                body = await request.json()
        self.interrupts += 1
        wanted = body.get("prompt_id") if isinstance(body, dict) else None
        if self._running and (wanted is None or wanted == self._running.prompt_id):
            assert self._interrupt is not None
            self._interrupt.set()
        return web.Response(status=200)

    async def _post_free(self, _: web.Request) -> web.Response:
        return web.Response(status=200)

    # -- validation ---------------------------------------------------------------------
    @staticmethod
    def _error(status: int, kind: str, message: str, details: str) -> web.Response:
        return web.json_response(
            {
                "error": {"type": kind, "message": message, "details": details, "extra_info": {}},
                "node_errors": {},
            },
            status=status,
        )

    def _choices(self, inp: Inp) -> list[str | int]:
        if inp.folder is not None:
            return list(self._installed(inp.folder))
        if inp.input_files:
            return sorted(
                str(p.relative_to(self.input_dir)) for p in self.input_dir.rglob("*") if p.is_file()
            )
        return list(inp.options)

    def _node_info(self, name: str) -> dict[str, Any]:
        node = NODE_CLASSES[name]

        def render(inp: Inp) -> list[Any]:
            if inp.type == "COMBO":
                choices = self._choices(inp)
                extra: dict[str, Any] = {"image_upload": True} if inp.input_files else {}
                if node.v3:
                    return ["COMBO", {"options": choices, **extra}]
                return [choices, extra] if extra else [choices]
            if inp.type in WIDGET_TYPES:
                opts = {
                    k: v
                    for k, v in (("default", inp.default), ("min", inp.min), ("max", inp.max))
                    if v is not None
                }
                return [inp.type, opts]
            return [inp.type]

        return {
            "input": {
                "required": {k: render(v) for k, v in node.required.items()},
                "optional": {k: render(v) for k, v in node.optional.items()},
            },
            "input_order": {"required": list(node.required), "optional": list(node.optional)},
            "output": list(node.outputs),
            "output_is_list": [False] * len(node.outputs),
            "output_name": list(node.outputs),
            "name": name,
            "display_name": name,
            "description": "",
            "python_module": "nodes",
            "category": node.category,
            "output_node": node.output_node,
        }

    def _validate(
        self, graph: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, list[str], dict[str, Any]]:
        for node_id, node in graph.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return (
                    {
                        "type": "invalid_prompt",
                        "message": "Cannot execute because a node is missing the class_type "
                        "property.",
                        "details": f"Node ID '#{node_id}'",
                        "extra_info": {},
                    },
                    [],
                    {},
                )
            class_type = node["class_type"]
            if class_type not in NODE_CLASSES:
                if self.missing_node_error == "invalid_prompt":
                    return (
                        {
                            "type": "invalid_prompt",
                            "message": f"Cannot execute because node {class_type} does not exist.",
                            "details": f"Node ID '#{node_id}'",
                            "extra_info": {},
                        },
                        [],
                        {},
                    )
                return (
                    {
                        "type": "missing_node_type",
                        "message": f"Node '{class_type}' not found. The custom node may not "
                        "be installed.",
                        "details": f"Node ID '#{node_id}'",
                        "extra_info": {
                            "node_id": node_id,
                            "class_type": class_type,
                            "node_title": node.get("_meta", {}).get("title", class_type),
                        },
                    },
                    [],
                    {},
                )
        outputs = [nid for nid, n in graph.items() if NODE_CLASSES[n["class_type"]].output_node]
        if not outputs:
            return (
                {
                    "type": "prompt_no_outputs",
                    "message": "Prompt has no outputs",
                    "details": "",
                    "extra_info": {},
                },
                [],
                {},
            )
        node_errors: dict[str, Any] = {}
        failed_outputs: list[str] = []
        for output_id in outputs:
            ok = True
            for node_id in self._ancestors(graph, output_id):
                errors = self._node_input_errors(graph, node_id)
                if errors:
                    ok = False
                    entry = node_errors.setdefault(
                        node_id,
                        {
                            "errors": errors,
                            "dependent_outputs": [],
                            "class_type": graph[node_id]["class_type"],
                        },
                    )
                    entry["dependent_outputs"].append(output_id)
            if not ok:
                failed_outputs.append(output_id)
        if failed_outputs:
            details = "".join(
                f"{graph[nid]['class_type']}:\n"
                + "".join(f"- {e['message']}: {e['details']}\n" for e in entry["errors"])
                for nid, entry in node_errors.items()
            )
            return (
                {
                    "type": "prompt_outputs_failed_validation",
                    "message": "Prompt outputs failed validation",
                    "details": details.rstrip("\n"),
                    "extra_info": {},
                },
                [],
                node_errors,
            )
        return None, outputs, {}

    @staticmethod
    def _ancestors(graph: dict[str, Any], output_id: str) -> list[str]:
        seen: list[str] = []
        stack = [output_id]
        while stack:
            node_id = stack.pop()
            if node_id in seen or node_id not in graph:
                continue
            seen.append(node_id)
            for value in graph[node_id].get("inputs", {}).values():
                if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                    stack.append(value[0])
        return seen

    def _node_input_errors(self, graph: dict[str, Any], node_id: str) -> list[dict[str, Any]]:
        node = graph[node_id]
        spec = NODE_CLASSES[node["class_type"]]
        inputs = node.get("inputs", {})
        errors: list[dict[str, Any]] = []
        for name, inp in [*spec.required.items(), *spec.optional.items()]:
            required = name in spec.required
            if name not in inputs:
                if required:
                    errors.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": name,
                            "extra_info": {"input_name": name},
                        }
                    )
                continue
            value = inputs[name]
            config = self._node_info(node["class_type"])["input"][
                "required" if required else "optional"
            ][name]
            extra = {"input_name": name, "input_config": config, "received_value": value}
            if isinstance(value, list):
                problem = self._link_error(graph, name, inp, value)
                if problem is not None:
                    problem["extra_info"] = {**extra, **problem.get("extra_info", {})}
                    errors.append(problem)
                continue
            if inp.type not in WIDGET_TYPES and inp.type != "COMBO":
                errors.append(
                    {
                        "type": "bad_linked_input",
                        "message": "Bad linked input, must be a length-2 list of [node_id, "
                        "slot_index]",
                        "details": name,
                        "extra_info": extra,
                    }
                )
                continue
            problem = self._widget_error(name, inp, value)
            if problem is not None:
                problem["extra_info"] = extra
                errors.append(problem)
        return errors

    @staticmethod
    def _link_error(
        graph: dict[str, Any], name: str, inp: Inp, value: list[Any]
    ) -> dict[str, Any] | None:
        if len(value) != 2 or not isinstance(value[1], int):
            return {
                "type": "bad_linked_input",
                "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                "details": name,
            }
        source_id, index = str(value[0]), value[1]
        source = graph.get(source_id)
        if source is None:
            return {
                "type": "exception_during_inner_validation",
                "message": "Exception when validating inner node",
                "details": f"'{source_id}'",
            }
        outputs = NODE_CLASSES[source["class_type"]].outputs
        if not 0 <= index < len(outputs):
            return {
                "type": "exception_during_inner_validation",
                "message": "Exception when validating inner node",
                "details": "tuple index out of range",
            }
        received = outputs[index]
        expected = inp.type if inp.type != "COMBO" else "COMBO"
        if received != expected and not (expected in WIDGET_TYPES and received == expected):
            return {
                "type": "return_type_mismatch",
                "message": "Return type mismatch between linked nodes",
                "details": f"{name}, received_type({received}) mismatch input_type({expected})",
                "extra_info": {"received_type": received, "linked_node": value},
            }
        return None

    def _widget_error(  # noqa: PLR0911 - one early return per ComfyUI error type
        self, name: str, inp: Inp, value: Any
    ) -> dict[str, Any] | None:
        if inp.type == "COMBO":
            choices = self._choices(inp)
            if inp.input_files:
                # As LoadImage.VALIDATE_INPUTS: the annotated path must exist, nothing more.
                if not isinstance(value, str) or not self._annotated_path(value).exists():
                    return {
                        "type": "custom_validation_failed",
                        "message": "Custom validation failed for node",
                        "details": f"{name} - Invalid image file: {value}",
                    }
                return None
            if value not in choices:
                shown = choices if len(choices) <= 20 else [*choices[:20], "..."]
                return {
                    "type": "value_not_in_list",
                    "message": "Value not in list",
                    "details": f"{name}: '{value}' not in {shown}",
                }
            return None
        converters: dict[str, Any] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
        if isinstance(value, dict) or (inp.type != "STRING" and isinstance(value, str)):
            try:
                value = converters[inp.type](value)
            except (TypeError, ValueError) as exc:
                return {
                    "type": "invalid_input_type",
                    "message": f"Failed to convert an input {name} value to a {inp.type} value",
                    "details": f"{name}, {value}, {exc}",
                }
        if inp.type in {"INT", "FLOAT"}:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return {
                    "type": "invalid_input_type",
                    "message": f"Failed to convert an input {name} value to a {inp.type} value",
                    "details": f"{name}, {value}",
                }
            if inp.min is not None and value < inp.min:
                return {
                    "type": "value_smaller_than_min",
                    "message": f"Value {value} smaller than min of {inp.min:g}",
                    "details": name,
                }
            if inp.max is not None and value > inp.max:
                return {
                    "type": "value_bigger_than_max",
                    "message": f"Value {value} bigger than max of {inp.max:g}",
                    "details": name,
                }
        return None

    # -- execution ----------------------------------------------------------------------
    def _remaining(self) -> int:
        return len(self._pending) + (1 if self._running else 0)

    async def _broadcast_status(self) -> None:
        message = {
            "type": "status",
            "data": {"status": {"exec_info": {"queue_remaining": self._remaining()}}},
        }
        for ws in list(self._sockets.values()):
            with contextlib.suppress(Exception):
                await ws.send_json(message)

    async def _send(self, prompt: _Prompt, kind: str, data: dict[str, Any]) -> None:
        ws = self._sockets.get(prompt.client_id or "")
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.send_json({"type": kind, "data": data})

    async def _send_preview(self, prompt: _Prompt) -> None:
        ws = self._sockets.get(prompt.client_id or "")
        if ws is not None and not ws.closed:
            # Binary preview frame: 4-byte big-endian event type, 4-byte format, JPEG bytes.
            with contextlib.suppress(Exception):
                await ws.send_bytes(struct.pack(">II", 1, 1) + b"\xff\xd8\xff\xe0preview")

    async def _worker(self) -> None:
        assert self._queue is not None
        while True:
            prompt = await self._queue.get()
            if prompt not in self._pending:
                continue  # deleted from the queue before it ran
            self._pending.remove(prompt)
            self._running = prompt
            assert self._interrupt is not None
            self._interrupt.clear()
            try:
                await self._execute(prompt)
            finally:
                self._running = None
            if self.crashed:
                return
            await self._broadcast_status()

    def _order(self, graph: dict[str, Any], outputs: list[str]) -> list[str]:
        order: list[str] = []

        def visit(node_id: str) -> None:
            if node_id in order:
                return
            for value in graph[node_id].get("inputs", {}).values():
                if isinstance(value, list) and len(value) == 2 and str(value[0]) in graph:
                    visit(str(value[0]))
            order.append(node_id)

        for output_id in sorted(outputs):
            visit(output_id)
        return order

    def _annotated_path(self, name: str) -> Path:
        """ComfyUI's ``folder_paths.get_annotated_filepath`` (input folder by default)."""
        base = self.input_dir
        for annotation, folder in (
            ("[output]", self.output_dir),
            ("[input]", self.input_dir),
            ("[temp]", self.temp_dir),
        ):
            if name.endswith(annotation):
                name, base = name[: -len(annotation) - 1], folder
                break
        return Path(os.path.join(base, name))  # noqa: PTH118 - join's absolute-path rule is the point

    def _is_changed(self, node: dict[str, Any]) -> str | None:
        """``IS_CHANGED``: a file loader's file hash (other nodes here have none)."""
        if node["class_type"] not in {"LoadImage", "LoadAudio"}:
            return None
        value = next(iter(node.get("inputs", {}).values()), "")
        path = self._annotated_path(str(value))
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return "missing"

    def _signatures(self, graph: dict[str, Any], order: list[str]) -> dict[str, str]:
        signatures: dict[str, str] = {}
        for node_id in order:  # ancestors come first
            node = graph[node_id]
            inputs = []
            for name in sorted(node.get("inputs", {})):
                value = node["inputs"][name]
                if isinstance(value, list) and len(value) == 2 and str(value[0]) in signatures:
                    inputs.append([name, "ANCESTOR", signatures[str(value[0])], value[1]])
                else:
                    inputs.append([name, value])
            text = json.dumps([node["class_type"], self._is_changed(node), inputs], default=str)
            signatures[node_id] = hashlib.sha256(text.encode()).hexdigest()
        return signatures

    async def _execute(self, prompt: _Prompt) -> None:
        pid = prompt.prompt_id
        run = _Run(prompt)
        await self._emit(run, "execution_start", {"prompt_id": pid}, record=True)
        order = self._order(prompt.graph, prompt.outputs)
        signatures = self._signatures(prompt.graph, order)
        used = set(signatures.values())
        self._cache = {k: v for k, v in self._cache.items() if k in used}  # clean_unused
        cached = [nid for nid in order if signatures[nid] in self._cache]
        await self._emit(run, "execution_cached", {"nodes": cached, "prompt_id": pid}, record=True)
        status = "success"
        try:
            for index, node_id in enumerate(order):
                if node_id in cached:
                    await self._replay(run, node_id, self._cache[signatures[node_id]])
                    continue
                last = index == len(order) - 1
                if not await self._step(run, node_id, last=last, first=not run.executed):
                    status = "error"
                    break
                self._cache[signatures[node_id]] = run.made(node_id)
            else:
                await self._emit(run, "execution_success", {"prompt_id": pid}, record=True)
        except _InterruptedError as stopped:
            status = "error"
            node_id = str(stopped)
            await self._emit(
                run,
                "execution_interrupted",
                {
                    "prompt_id": pid,
                    "node_id": node_id,
                    "node_type": prompt.graph[node_id]["class_type"],
                    "executed": run.executed,
                },
                record=True,
            )
        except _CrashedError:
            return
        self._history[pid] = {
            "prompt": [prompt.number, pid, prompt.graph, prompt.extra_data, prompt.outputs],
            "outputs": run.ui_outputs,
            "status": {
                "status_str": status,
                "completed": status == "success",
                "messages": run.messages,
            },
            "meta": {
                nid: {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                for nid in run.ui_outputs
            },
        }
        await self._emit(run, "executing", {"node": None, "prompt_id": pid})

    async def _emit(
        self, run: _Run, kind: str, data: dict[str, Any], *, record: bool = False
    ) -> None:
        """Send an event to the prompt's client; ``record`` keeps it for the history too."""
        if record:
            run.messages.append([kind, {**data, "timestamp": int(time.time() * 1000)}])
        await self._send(run.prompt, kind, data)

    async def _replay(self, run: _Run, node_id: str, entry: _Made) -> None:
        """A cached node: its outputs as the earlier run made them, and only ``executed``."""
        output, run.batches[node_id], run.sizes[node_id] = entry
        if output is not None:
            run.ui_outputs[node_id] = output
        await self._emit(
            run,
            "executed",
            {
                "node": node_id,
                "display_node": node_id,
                "output": output,
                "prompt_id": run.prompt.prompt_id,
            },
        )

    async def _step(self, run: _Run, node_id: str, *, last: bool, first: bool) -> bool:
        """Run one node (faults of the first node and failures included); False: the prompt
        failed and stops here."""
        prompt, fault = run.prompt, self.fault
        node = prompt.graph[node_id]
        class_type = node["class_type"]
        await self._emit(
            run, "executing", {"node": node_id, "display_node": node_id, "prompt_id": run.pid}
        )
        if first:
            await self._first_node_fault(fault)
        self._raise_if_interrupted(node_id)
        message: str | None = None
        failed = fault in {Fault.EXECUTION_ERROR, Fault.OUT_OF_MEMORY} and (
            class_type in _SAMPLER_CLASSES or last
        )
        if not failed:
            try:
                self._load_model_files(node)
                await self._run_node(
                    prompt, node_id, node, run.batches, functools.partial(self._emit, run)
                )
                run.sizes[node_id] = self._image_size(prompt.graph, node, run.sizes)
                output = self._write_outputs(prompt, node_id, node, run.batches, run.sizes)
            except _NodeFailedError as error:
                failed, message = True, str(error)
        if failed:
            await self._fail(
                prompt,
                functools.partial(self._emit, run),
                node_id=node_id,
                class_type=class_type,
                executed=run.executed,
                fault=fault,
                message=message,
            )
            return False
        run.executed.append(node_id)
        if output is not None:
            run.ui_outputs[node_id] = output
            await self._emit(
                run,
                "executed",
                {"node": node_id, "display_node": node_id, "output": output, "prompt_id": run.pid},
            )
        return True

    async def _first_node_fault(self, fault: Fault) -> None:
        """What a crash, hang or stuck fault does when the prompt's first node starts."""
        if fault is Fault.CRASH:
            await self._crash()
            raise _CrashedError
        if fault is Fault.HANG:
            assert self._interrupt is not None
            await self._interrupt.wait()
        if fault is Fault.STUCK:
            await asyncio.Event().wait()  # until the double stops

    def _raise_if_interrupted(self, node_id: str) -> None:
        if self._interrupt is not None and self._interrupt.is_set():
            raise _InterruptedError(node_id)

    async def _fail(
        self,
        prompt: _Prompt,
        emit: Any,
        *,
        node_id: str,
        class_type: str,
        executed: list[str],
        fault: Fault,
        message: str | None = None,
    ) -> None:
        if message is not None:
            kind, text = "Exception", message
        elif fault is Fault.OUT_OF_MEMORY:
            kind = "torch.OutOfMemoryError"
            text = (
                "Allocation on device 0 would exceed allowed memory. (out of memory)\n"
                "Currently allocated     : 44.10 GiB\nRequested               : 3.52 GiB"
            )
        else:
            kind = "RuntimeError"
            text = "mat1 and mat2 shapes cannot be multiplied (77x768 and 4096x3072)"
        await emit(
            "execution_error",
            {
                "prompt_id": prompt.prompt_id,
                "node_id": node_id,
                "node_type": class_type,
                "executed": executed,
                "exception_message": text,
                "exception_type": kind,
                "traceback": ['  File "execution.py", line 496, in execute\n'],
                "current_inputs": {},
                "current_outputs": {},
            },
            record=True,
        )

    def _load_model_files(self, node: dict[str, Any]) -> None:
        """A loader reads its file from ``models_dir`` as ComfyUI's ``load_torch_file`` does:
        a ``.safetensors`` that ``safe_open`` refuses fails the node."""
        spec = NODE_CLASSES[node["class_type"]]
        for name, inp in {**spec.required, **spec.optional}.items():
            value = node.get("inputs", {}).get(name)
            if inp.folder is None or not isinstance(value, str):
                continue
            path = self._disk_file(inp.folder, value)
            if path is None:
                continue
            if path.suffix.lower() in {".safetensors", ".sft"}:
                problem = safetensors_problem(path)
                if problem is not None:
                    raise _NodeFailedError(
                        f"Error while deserializing header: {problem}\n\nFile path: {path}\n\n"
                        "The safetensors file is corrupt or invalid."
                    )
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            self.loaded_files.append((inp.folder, value, digest))

    async def _run_node(
        self,
        prompt: _Prompt,
        node_id: str,
        node: dict[str, Any],
        batches: dict[str, int],
        emit: Any,
    ) -> None:
        inputs = node.get("inputs", {})
        linked = [
            batches.get(str(v[0]), 1)
            for v in inputs.values()
            if isinstance(v, list) and len(v) == 2
        ]
        batch = inputs.get("batch_size")
        batches[node_id] = int(batch) if isinstance(batch, int) else max(linked, default=1)
        if node["class_type"] == "LatentFromBatch":  # as nodes.py frombatch clamps
            size = max(linked, default=1)
            start = int(inputs.get("batch_index", 0))
            start = max(0, min(size - 1, start + size if start < 0 else start))
            batches[node_id] = min(size - start, int(inputs.get("length", 1)))
        if node["class_type"] == "ImageUpscaleWithModel":
            for tile in range(1, UPSCALE_TILES * batches[node_id] + 1):
                await emit(
                    "progress",
                    {
                        "value": tile,
                        "max": UPSCALE_TILES * batches[node_id],
                        "prompt_id": prompt.prompt_id,
                        "node": node_id,
                    },
                )
        if node["class_type"] in _SAMPLER_CLASSES:
            steps = int(inputs.get("steps", 1))
            start = int(inputs.get("start_at_step", 0))
            end = min(int(inputs.get("end_at_step", steps)), steps)
            for step in range(start + 1, end + 1):
                await emit(
                    "progress",
                    {
                        "value": step,
                        "max": end - start,
                        "prompt_id": prompt.prompt_id,
                        "node": node_id,
                    },
                )
            await self._send_preview(prompt)
        if self.node_seconds > 0:
            assert self._interrupt is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._interrupt.wait(), self.node_seconds)

    @staticmethod
    def _linked_value(graph: dict[str, Any], value: Any) -> Any:
        """A widget's value as the node receives it: a link to a ``PrimitiveString`` is the
        string it returns (other links stay as they are: the double computes no tensors)."""
        seen = 0
        while isinstance(value, list) and len(value) == 2 and seen < len(graph):
            source = graph.get(str(value[0])) or {}
            if source.get("class_type") != "PrimitiveString":
                break
            value, seen = source.get("inputs", {}).get("value"), seen + 1
        return value

    def _save_path(self, prefix: str, extension: str) -> tuple[str, str, Path]:
        # folder_paths.get_save_image_path: normpath, then refuse a folder outside output.
        output_dir = os.path.abspath(self.output_dir)  # noqa: PTH100 - ComfyUI's own calls
        subfolder = os.path.dirname(os.path.normpath(prefix))  # noqa: PTH120
        base = os.path.basename(os.path.normpath(prefix))  # noqa: PTH119
        full = os.path.join(output_dir, subfolder)  # noqa: PTH118
        if os.path.commonpath((output_dir, os.path.abspath(full))) != output_dir:  # noqa: PTH100
            raise _NodeFailedError(
                "**** ERROR: Saving image outside the output folder is not allowed."
                f"\n full_output_folder: {os.path.abspath(full)}"  # noqa: PTH100
                f"\n         output_dir: {output_dir}"
            )
        folder = Path(full)
        folder.mkdir(parents=True, exist_ok=True)
        pattern = re.compile(rf"^{re.escape(base)}_(\d{{5}})_")
        numbers = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))]
        filename = f"{base}_{max(numbers, default=0) + 1:05}_.{extension}"
        return filename, subfolder, folder / filename

    def _image_size(
        self,
        graph: dict[str, Any],
        node: dict[str, Any],
        sizes: Mapping[str, tuple[int, int] | None],
    ) -> tuple[int, int] | None:
        """(width, height) of the image ``node`` outputs, where the double tracks it: a loaded
        PNG, an ``EmptyImage``, and what an upscale model or ``ImageScaleBy`` makes of a
        tracked image (``round(side * scale_by)``, as nodes.py computes it); else None."""
        inputs = node.get("inputs", {})
        source = inputs.get("image")
        linked = sizes.get(str(source[0])) if isinstance(source, list) else None
        match node["class_type"]:
            case "LoadImage":
                path = self._annotated_path(str(inputs.get("image", "")))
                return png_size(path.read_bytes()) if path.is_file() else None
            case "EmptyImage":
                return int(inputs["width"]), int(inputs["height"])
            case "ImageScaleBy" if linked is not None:
                scale = float(inputs["scale_by"])
                return round(linked[0] * scale), round(linked[1] * scale)
            case "ImageUpscaleWithModel" if linked is not None:
                loader = graph.get(str(inputs["upscale_model"][0])) or {}
                factor = upscale_factor(str(loader.get("inputs", {}).get("model_name", "")))
                return None if factor is None else (linked[0] * factor, linked[1] * factor)
        return None

    def _preview(self, png: bytes) -> dict[str, str]:
        name = f"ComfyUI_temp_{uuid.uuid4().hex[:5]}_00001_.png"
        (self.temp_dir / name).write_bytes(png)
        return {"filename": name, "subfolder": "", "type": "temp"}

    def _save(self, prefix: str, extension: str, data: bytes) -> dict[str, str]:
        filename, subfolder, path = self._save_path(prefix, extension)
        path.write_bytes(data)
        return {"filename": filename, "subfolder": subfolder, "type": "output"}

    def _write_outputs(
        self,
        prompt: _Prompt,
        node_id: str,
        node: dict[str, Any],
        batches: dict[str, int],
        sizes: Mapping[str, tuple[int, int] | None],
    ) -> dict[str, Any] | None:
        class_type = node["class_type"]
        inputs = {
            name: self._linked_value(prompt.graph, value)
            for name, value in node.get("inputs", {}).items()
        }
        size = self.output_bytes
        if class_type in {"SaveImage", "PreviewImage"}:
            source = node["inputs"].get("images")
            tracked = sizes.get(str(source[0])) if isinstance(source, list) else None
            png = tiny_png(size=tracked[0], height=tracked[1]) if tracked else tiny_png()
            count = batches.get(node_id, 1)
            if class_type == "PreviewImage":
                return {"images": [self._preview(png) for _ in range(count)]}
            prefix = str(inputs.get("filename_prefix", "ComfyUI"))
            return {"images": [self._save(prefix, "png", _padded(png, size)) for _ in range(count)]}
        if class_type == "SaveVideo":
            mp4 = _padded(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", size)
            prefix = str(inputs.get("filename_prefix", "video/ComfyUI"))
            return {"images": [self._save(prefix, "mp4", mp4)], "animated": [True]}
        if class_type == "VHS_VideoCombine":
            fmt = str(inputs.get("format", "image/gif"))
            extension = fmt.rsplit("/", maxsplit=1)[-1].replace("h264-", "")
            filename, subfolder, path = self._save_path(
                str(inputs.get("filename_prefix", "AnimateDiff")), extension
            )
            path.write_bytes(
                _padded(b"\x00\x00\x00\x18ftypmp42" if "mp4" in fmt else b"GIF89a", size)
            )
            folder_type = "output" if inputs.get("save_output", True) else "temp"
            return {
                "gifs": [
                    {
                        "filename": filename,
                        "subfolder": subfolder,
                        "type": folder_type,
                        "format": fmt,
                        "frame_rate": float(inputs.get("frame_rate", 8)),
                        "workflow": filename.rsplit(".", 1)[0] + ".png",
                        "fullpath": str(path),
                    }
                ]
            }
        if class_type == "SaveAudio":
            flac = _padded(b"fLaC\x00\x00\x00\x22", size)
            prefix = str(inputs.get("filename_prefix", "audio/ComfyUI"))
            return {"audio": [self._save(prefix, "flac", flac)]}
        return None


@contextlib.contextmanager
def running_double(**kwargs: Any) -> Iterator[ComfyUIDouble]:
    """``with running_double(models=...) as comfy:``, the double for one test."""
    double = ComfyUIDouble(**kwargs)
    with double:
        yield double


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the double until interrupted: ``python -m tests.fakes.comfyui --port 8188``."""
    import argparse  # noqa: PLC0415 - only the command line needs it

    parser = argparse.ArgumentParser(description="ComfyUI double on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="FOLDER=FILE",
        help="an installed model, e.g. checkpoints=flux1-dev-fp8.safetensors (repeatable)",
    )
    args = parser.parse_args(argv)
    models: dict[str, list[str]] = {}
    for item in args.model:
        folder, _, name = item.partition("=")
        models.setdefault(folder, []).append(name)
    double = ComfyUIDouble(models=models)
    if args.port:
        double.bind_port = args.port
    with double:
        print(f"ComfyUI double at {double.url} (pid file {double.pid_file}); Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
