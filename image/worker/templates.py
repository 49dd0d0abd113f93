"""Named templates: API-format workflows in ``image/workflows/`` plus documented parameters.

Owns: the list of templates the job contract accepts, each parameter's type, range and
default, where each parameter lands in the graph (node id + input name), the model groups a
template needs (checked against ``models.toml`` by the tests), and turning
``{"template", "params"}`` into a graph ComfyUI accepts. Raises :class:`ParamError` with a
message a person can act on. Knows nothing about HTTP or R2.
"""

from __future__ import annotations

import copy
import json
import math
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

SEED_MAX = 2**64 - 1
WAN_NEGATIVE = (
    "blurry, low quality, static, overexposed, worst quality, jpeg artifacts, deformed, "
    "extra fingers, bad hands, bad anatomy, text, watermark, subtitles"
)


class ParamError(ValueError):
    """A template or one of its parameters is wrong; the message says how to fix it."""


@dataclass(frozen=True)
class Param:
    """One documented template parameter."""

    name: str
    kind: type
    """``str``, ``int``, ``float`` or ``bool``."""
    doc: str
    _: KW_ONLY
    default: Any = None
    """None with ``required`` False means "keep the workflow's value"."""
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    multiple_of: int | None = None
    rule: Callable[[Any], str | None] | None = None
    """Extra check returning a problem description, or None."""

    def check(self, value: Any) -> Any:
        """Return ``value`` coerced to the parameter's type, or raise :class:`ParamError`."""
        value = self._coerce(value)
        if self.minimum is not None and value < self.minimum:
            raise ParamError(f"params.{self.name} must be >= {self.minimum:g}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise ParamError(f"params.{self.name} must be <= {self.maximum:g}, got {value}")
        if self.multiple_of and value % self.multiple_of:
            raise ParamError(
                f"params.{self.name} must be a multiple of {self.multiple_of}, got {value}"
            )
        if self.rule is not None and (problem := self.rule(value)):
            raise ParamError(f"params.{self.name} {problem}, got {value}")
        return value

    def _coerce(self, value: Any) -> Any:
        expected = self.kind.__name__
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ParamError(f"params.{self.name} must be true or false, got {value!r}")
            return value
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ParamError(f"params.{self.name} must be an integer, got {value!r}")
            if isinstance(value, float) and not value.is_integer():
                raise ParamError(f"params.{self.name} must be an integer, got {value!r}")
            return int(value)
        if self.kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ParamError(f"params.{self.name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ParamError(f"params.{self.name} must be a finite number, got {value!r}")
            return float(value)
        if not isinstance(value, str):
            raise ParamError(f"params.{self.name} must be a {expected}, got {value!r}")
        return value


Binding = tuple[str, str, Callable[[Any], Any] | None]
"""(node id, input name, transform of the parameter value or None)."""


@dataclass(frozen=True)
class Variant:
    """One workflow file of a template and where each parameter goes in it."""

    workflow: str
    """File name in the workflows folder."""
    bindings: Mapping[str, tuple[Binding, ...]]
    groups: tuple[str, ...]
    """Model groups (``models.toml``) this variant needs."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Defaults that differ from the template-wide ones (e.g. steps)."""


@dataclass(frozen=True)
class Template:
    """A named template the job contract accepts."""

    name: str
    summary: str
    params: tuple[Param, ...]
    variants: Mapping[str, Variant]
    """Variant name -> variant; ``choose`` picks one from the checked parameters."""
    choose: Callable[[Mapping[str, Any]], str] = lambda _params: "default"
    image_param: str | None = None
    """The parameter naming an uploaded image, if the template reads one."""

    def param(self, name: str) -> Param:
        """The parameter called ``name``."""
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(name)


def workflows_dir() -> Path:
    """Folder of the workflow files (``WORKFLOWS_DIR``, else ``image/workflows``)."""
    override = os.environ.get("WORKFLOWS_DIR", "").strip()
    return Path(override) if override else Path(__file__).resolve().parent.parent / "workflows"


@cache
def _load(path: Path) -> dict[str, Any]:
    graph = json.loads(path.read_text())
    if not isinstance(graph, dict):
        raise ParamError(f"workflow {path.name} is not an API-format graph")
    return graph


def load_workflow(file_name: str) -> dict[str, Any]:
    """A fresh copy of one workflow file."""
    return copy.deepcopy(_load(workflows_dir() / file_name))


def _frames_rule(value: int) -> str | None:
    return None if (value - 1) % 4 == 0 else "must be 4n+1 (e.g. 49, 81, 121)"


def _half(value: int) -> int:
    return value // 2


_PROMPT = Param("prompt", str, "What to generate.", required=True)
_NEGATIVE = Param("negative_prompt", str, "What to avoid (ignored by FLUX at cfg 1).")
_SEED = Param(
    "seed", int, "Noise seed; random when omitted.", minimum=0, maximum=SEED_MAX, default=None
)
_IMAGE = Param(
    "image",
    str,
    "Name of an entry in `images`; defaults to the only image when exactly one is sent.",
)

_FLUX_TXT2IMG = Template(
    name="flux_txt2img",
    summary="FLUX.1-dev fp8 text to image.",
    params=(
        _PROMPT,
        _NEGATIVE,
        _SEED,
        Param(
            "width",
            int,
            "Width in pixels.",
            default=1024,
            minimum=256,
            maximum=2048,
            multiple_of=16,
        ),
        Param(
            "height",
            int,
            "Height in pixels.",
            default=1024,
            minimum=256,
            maximum=2048,
            multiple_of=16,
        ),
        Param("steps", int, "Sampling steps.", default=20, minimum=1, maximum=100),
        Param("guidance", float, "FLUX guidance.", default=3.5, minimum=0, maximum=30),
        Param("batch_size", int, "Images per job.", default=1, minimum=1, maximum=4),
    ),
    variants={
        "default": Variant(
            workflow="flux_txt2img.json",
            groups=("flux_dev_fp8",),
            bindings={
                "prompt": (("2", "text", None),),
                "negative_prompt": (("4", "text", None),),
                "seed": (("6", "seed", None),),
                "width": (("5", "width", None),),
                "height": (("5", "height", None),),
                "batch_size": (("5", "batch_size", None),),
                "steps": (("6", "steps", None),),
                "guidance": (("3", "guidance", None),),
            },
        )
    },
)

_FLUX_IMG2IMG = Template(
    name="flux_img2img",
    summary="FLUX.1-dev fp8 image to image: the input image is re-noised by `strength`.",
    params=(
        _PROMPT,
        _NEGATIVE,
        _SEED,
        _IMAGE,
        Param(
            "strength",
            float,
            "Denoise strength, 0 keeps the image.",
            default=0.65,
            minimum=0,
            maximum=1,
        ),
        Param("steps", int, "Sampling steps.", default=20, minimum=1, maximum=100),
        Param("guidance", float, "FLUX guidance.", default=3.5, minimum=0, maximum=30),
        Param(
            "megapixels",
            float,
            "The input is scaled to this many megapixels (aspect kept) before sampling, so a "
            "phone photo does not run out of memory.",
            default=1.0,
            minimum=0.25,
            maximum=2.0,
        ),
    ),
    image_param="image",
    variants={
        "default": Variant(
            workflow="flux_img2img.json",
            groups=("flux_dev_fp8",),
            bindings={
                "prompt": (("2", "text", None),),
                "negative_prompt": (("4", "text", None),),
                "seed": (("7", "seed", None),),
                "image": (("5", "image", None),),
                "strength": (("7", "denoise", None),),
                "steps": (("7", "steps", None),),
                "guidance": (("3", "guidance", None),),
                "megapixels": (("10", "megapixels", None),),
            },
        )
    },
)

_REMOVE_BACKGROUND = Template(
    name="remove_background",
    summary="BiRefNet background removal (core ComfyUI nodes); a PNG with alpha.",
    params=(_IMAGE,),
    image_param="image",
    variants={
        "default": Variant(
            workflow="remove_background.json",
            groups=("background_removal",),
            bindings={"image": (("1", "image", None),)},
        )
    },
)

_WAN_SAMPLERS: dict[str, tuple[Binding, ...]] = {
    "seed": (("12", "noise_seed", None), ("13", "noise_seed", None)),
    "steps": (
        ("12", "steps", None),
        ("12", "end_at_step", _half),
        ("13", "steps", None),
        ("13", "start_at_step", _half),
    ),
    "cfg": (("12", "cfg", None), ("13", "cfg", None)),
}
_WAN_COMMON: dict[str, tuple[Binding, ...]] = {
    "prompt": (("8", "text", None),),
    "negative_prompt": (("9", "text", None),),
    "width": (("11", "width", None),),
    "height": (("11", "height", None),),
    "frames": (("11", "length", None),),
    "fps": (("15", "fps", None),),
}

_WAN22_T2V = Template(
    name="wan22_t2v",
    summary=(
        "WAN 2.2 T2V A14B at 720p with native nodes: `fast` (default) adds the lightx2v "
        "4-step LoRAs (4 steps, cfg 1); `fast: false` runs the full 20-step path."
    ),
    params=(
        _PROMPT,
        Param("negative_prompt", str, "What to avoid.", default=WAN_NEGATIVE),
        _SEED,
        Param(
            "width",
            int,
            "Width in pixels.",
            default=1280,
            minimum=256,
            maximum=1280,
            multiple_of=16,
        ),
        Param(
            "height",
            int,
            "Height in pixels.",
            default=720,
            minimum=256,
            maximum=1280,
            multiple_of=16,
        ),
        Param(
            "frames", int, "Frames, 4n+1.", default=81, minimum=5, maximum=161, rule=_frames_rule
        ),
        Param("fps", int, "Frames per second of the MP4.", default=16, minimum=1, maximum=60),
        Param(
            "steps",
            int,
            "Total steps, split evenly between the two experts.",
            minimum=2,
            maximum=60,
        ),
        Param("cfg", float, "Classifier-free guidance.", minimum=1, maximum=20),
        Param("fast", bool, "Use the 4-step LoRA path.", default=True),
    ),
    choose=lambda params: "fast" if params.get("fast", True) else "full",
    variants={
        "fast": Variant(
            workflow="wan22_t2v.json",
            groups=("wan22_t2v", "wan22_t2v_fast"),
            bindings={**_WAN_COMMON, **_WAN_SAMPLERS},
            defaults={"steps": 4, "cfg": 1.0},
        ),
        "full": Variant(
            workflow="wan22_t2v_full.json",
            groups=("wan22_t2v",),
            bindings={**_WAN_COMMON, **_WAN_SAMPLERS},
            defaults={"steps": 20, "cfg": 3.5},
        ),
    },
)

#: TurboDiffusion's 720p sizes per aspect ratio (its VIDEO_RES_SIZE_INFO["720p"]); the
#: text-to-video first frame is drawn at the same size.
TURBO_720P: dict[str, tuple[int, int]] = {
    "16:9": (1280, 720),
    "9:16": (720, 1280),
    "4:3": (960, 720),
    "3:4": (720, 960),
    "1:1": (960, 960),
}


def _turbo_frames_rule(value: int) -> str | None:
    return None if (value - 1) % 8 == 0 else "must be 8n+1 (e.g. 49, 81, 121)"


def _aspect_rule(value: str) -> str | None:
    return None if value in TURBO_720P else f"must be one of {', '.join(TURBO_720P)}"


_TURBO_PARAMS = (
    Param(
        "frames",
        int,
        "Frames, 8n+1 (81 = 5 s at 16 fps).",
        default=81,
        minimum=9,
        maximum=161,
        rule=_turbo_frames_rule,
    ),
    Param("fps", int, "Frames per second of the MP4.", default=16, minimum=1, maximum=60),
    Param(
        "steps",
        int,
        "rCM sampling steps (the checkpoints are distilled for 1-4).",
        default=4,
        minimum=1,
        maximum=4,
    ),
    Param(
        "aspect_ratio",
        str,
        "16:9, 9:16, 4:3, 3:4 or 1:1 at 720p.",
        default="16:9",
        rule=_aspect_rule,
    ),
)
_TURBO_BINDINGS: dict[str, tuple[Binding, ...]] = {
    "prompt": (("23", "text", None),),
    "seed": (("26", "seed", None),),
    "frames": (("26", "num_frames", None),),
    "steps": (("26", "num_steps", None),),
    "aspect_ratio": (
        ("26", "aspect_ratio", None),
        ("26", "width", lambda a: TURBO_720P[a][0]),
        ("26", "height", lambda a: TURBO_720P[a][1]),
    ),
    "fps": (("27", "fps", float),),
}

_WAN22_TURBO_I2V = Template(
    name="wan22_turbo_i2v",
    summary=(
        "WAN 2.2 I2V A14B at 720p with TurboDiffusion (rCM 4 steps, SLA attention, int8 "
        "W8A8 experts): the input image is the first frame."
    ),
    params=(_PROMPT, _SEED, _IMAGE, *_TURBO_PARAMS),
    image_param="image",
    variants={
        "default": Variant(
            workflow="wan22_turbo_i2v.json",
            groups=("turbodiffusion",),
            bindings={**_TURBO_BINDINGS, "image": (("25", "image", None),)},
        )
    },
)

_WAN22_TURBO_T2V = Template(
    name="wan22_turbo_t2v",
    summary=(
        "Text to video at 720p: FLUX.1-dev draws the first frame from the prompt, then "
        "TurboDiffusion's WAN 2.2 I2V animates it (TurboDiffusion has no WAN 2.2 T2V model)."
    ),
    params=(
        _PROMPT,
        _SEED,
        *_TURBO_PARAMS,
        Param(
            "image_steps", int, "FLUX steps for the first frame.", default=20, minimum=1, maximum=50
        ),
    ),
    variants={
        "default": Variant(
            workflow="wan22_turbo_t2v.json",
            groups=("flux_dev_fp8", "turbodiffusion"),
            bindings={
                **_TURBO_BINDINGS,
                "prompt": (("2", "text", None), ("23", "text", None)),
                "seed": (("6", "seed", None), ("26", "seed", None)),
                "aspect_ratio": (
                    *_TURBO_BINDINGS["aspect_ratio"],
                    ("5", "width", lambda a: TURBO_720P[a][0]),
                    ("5", "height", lambda a: TURBO_720P[a][1]),
                ),
                "image_steps": (("6", "steps", None),),
            },
        )
    },
)

TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        _FLUX_TXT2IMG,
        _FLUX_IMG2IMG,
        _REMOVE_BACKGROUND,
        _WAN22_T2V,
        _WAN22_TURBO_I2V,
        _WAN22_TURBO_T2V,
    )
}


def check_params(template: Template, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Type- and range-check ``raw``; return the values to apply (defaults filled in)."""
    known = {p.name for p in template.params}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ParamError(
            f"template {template.name} has no parameter {', '.join(unknown)}; "
            f"it takes: {', '.join(sorted(known))}"
        )
    values: dict[str, Any] = {}
    for param in template.params:
        if param.name in raw and raw[param.name] is not None:
            values[param.name] = param.check(raw[param.name])
        elif param.required:
            raise ParamError(f"template {template.name} needs params.{param.name}: {param.doc}")
        elif param.default is not None:
            values[param.name] = param.default
    if "seed" in known and "seed" not in values:
        values["seed"] = secrets.randbelow(2**53)
    if "prompt" in values and not values["prompt"].strip():
        raise ParamError("params.prompt must not be empty")
    return values


def render(template: Template, raw: Mapping[str, Any]) -> tuple[dict[str, Any], Variant]:
    """The graph for ``template`` with ``raw`` parameters applied, and the variant used."""
    values = check_params(template, raw)
    variant = template.variants[template.choose(values)]
    for name, value in variant.defaults.items():
        values.setdefault(name, value)
    graph = load_workflow(variant.workflow)
    for name, value in values.items():
        for node_id, input_name, transform in variant.bindings.get(name, ()):
            graph[node_id]["inputs"][input_name] = transform(value) if transform else value
    return graph, variant


def get_template(name: object) -> Template:
    """The template called ``name`` or a :class:`ParamError` listing the known ones."""
    if not isinstance(name, str) or name not in TEMPLATES:
        raise ParamError(
            f"unknown template {name!r}; known templates: {', '.join(sorted(TEMPLATES))}"
        )
    return TEMPLATES[name]
