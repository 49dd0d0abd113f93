#!/usr/bin/env python3
"""Record the node facts the tests check our graphs against, from a real ComfyUI's /object_info.

Owns: turning an ``/object_info`` document, taken from ComfyUI and the custom nodes at the
commits of ``nodes.toml``, into ``node_facts.json``: which package defines every node class,
and for each class our workflows or documented features use, its inputs (required or not,
type, range, COMBO choices), outputs and whether it is an output node. A model-file COMBO is
recorded as the folder it lists: run ComfyUI with an empty probe file per folder
(``node_facts.py probe``) and each list then names its folder and accepted extensions.
Fetches nothing and builds nothing: it reads a JSON document.

    node_facts.py probe COMFYUI_DIR        create the probe files in models/ and input/
    node_facts.py record OBJECT_INFO.json  write node_facts.json (see --help)

How to refresh after moving a pin: docs/worker-image.md ("Move a pin").
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROBE = re.compile(r"^__probe__(?P<folder>[A-Za-z0-9_]+)__(?P<ext>\.[A-Za-z0-9]+)$")
INPUT_PROBE = re.compile(r"^__probe_input__\.[a-z0-9]+$")
#: Folders a probe file is put in (ComfyUI core's and the locked nodes' model folders).
PROBE_FOLDERS = (
    "checkpoints", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
    "style_models", "embeddings", "vae_approx", "controlnet", "gligen", "upscale_models",
    "latent_upscale_models", "hypernetworks", "photomaker", "classifiers", "model_patches",
    "audio_encoders", "background_removal", "frame_interpolation", "geometry_estimation",
    "optical_flow", "detection", "unet_gguf", "wav2vec2", "nlf", "mmaudio",
)  # fmt: skip
PROBE_EXTENSIONS = (".safetensors", ".pth", ".onnx", ".gguf")
#: Widget types ComfyUI validates by value; every other string type is a link type.
WIDGETS = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN"})
#: Nodes that exist only in the browser (never sent to /prompt): not in /object_info.
FRONTEND_ONLY = frozenset(
    {"GetNode", "SetNode", "PrimitiveNode", "Note", "MarkdownNote", "Reroute"}
)


def probe(comfyui_dir: Path) -> None:
    """Create one empty probe file per folder and extension, and probe inputs."""
    for folder in PROBE_FOLDERS:
        target = comfyui_dir / "models" / folder
        target.mkdir(parents=True, exist_ok=True)
        for ext in PROBE_EXTENSIONS:
            (target / f"__probe__{folder}__{ext}").touch()
    inputs = comfyui_dir / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    for ext in (".png", ".mp4", ".wav"):
        (inputs / f"__probe_input__{ext}").touch()


def package_of(python_module: str) -> str:
    """``nodes``/``comfy_extras.x``/``comfy_api_nodes.x`` -> ComfyUI; ``custom_nodes.X`` -> X."""
    if python_module.startswith("custom_nodes."):
        name = python_module.split(".", 2)[1]
        # ComfyUI ships this example in its own custom_nodes/ folder.
        return "ComfyUI" if name == "websocket_image_save" else name
    return "ComfyUI"


def _combo(options: Sequence[Any]) -> dict[str, Any]:
    folders = {m["folder"] for o in options if isinstance(o, str) and (m := PROBE.match(o))}
    exts = sorted({m["ext"] for o in options if isinstance(o, str) and (m := PROBE.match(o))})
    plain = [o for o in options if not (isinstance(o, str) and o.startswith("__probe"))]
    if len(folders) > 1:
        raise ValueError(f"a combo lists several probe folders: {sorted(folders)}")
    if folders:
        return {"type": "COMBO", "folder": folders.pop(), "extensions": exts, "options": plain}
    if any(isinstance(o, str) and INPUT_PROBE.match(o) for o in options):
        return {"type": "COMBO", "input_files": True}
    return {"type": "COMBO", "options": list(options)}


def describe_input(spec: Sequence[Any]) -> dict[str, Any]:
    """One input as the facts record it (see the module docstring)."""
    kind = spec[0]
    opts: Mapping[str, Any] = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(kind, list):
        return _combo(kind)
    if kind == "COMBO":
        return _combo(opts.get("options", []))
    if kind == "COMFY_DYNAMICCOMBO_V3":
        return {"type": "COMBO", "options": [o["key"] for o in opts.get("options", [])]}
    out: dict[str, Any] = {"type": kind}
    if kind in WIDGETS:
        for key in ("min", "max", "step", "default"):
            if key in opts:
                out[key] = opts[key]
    return out


def describe_node(info: Mapping[str, Any]) -> dict[str, Any]:
    """A node class: package, inputs, outputs, output_node."""
    inputs: dict[str, Any] = {}
    for section in ("required", "optional"):
        for name, spec in (info.get("input", {}).get(section) or {}).items():
            inputs[name] = {"required": section == "required", **describe_input(spec)}
    return {
        "package": package_of(str(info.get("python_module", ""))),
        "inputs": inputs,
        "outputs": list(info.get("output", [])),
        "output_node": bool(info.get("output_node", False)),
    }


def used_class_types(workflows: Path) -> set[str]:
    """Every class_type of the API-format graphs in ``workflows``."""
    used: set[str] = set()
    for path in workflows.glob("*.json"):
        used |= {node["class_type"] for node in json.loads(path.read_text()).values()}
    return used


def ui_class_types(ui_workflow: Path) -> list[str]:
    """Server-side node types of a UI-format workflow (frontend-only nodes left out)."""
    data = json.loads(ui_workflow.read_text())
    return sorted({n["type"] for n in data["nodes"] if n["type"] not in FRONTEND_ONLY})


def record(
    object_info: Mapping[str, Any],
    lock: Path,
    workflows: Path,
    features: Mapping[str, Any],
) -> dict[str, Any]:
    """The whole facts document."""
    packages: dict[str, list[str]] = {}
    for name, info in object_info.items():
        packages.setdefault(package_of(str(info.get("python_module", ""))), []).append(name)
    wanted = used_class_types(workflows)
    for feature in features.values():
        wanted |= set(feature["class_types"])
    missing = sorted(wanted - set(object_info))
    if missing:
        raise ValueError(f"not in /object_info (not installed?): {', '.join(missing)}")
    pins = tomllib.loads(lock.read_text())["package"]
    return {
        "read_from": {
            "how": (
                "GET /object_info of ComfyUI with the custom nodes of nodes.toml at these "
                "commits, started on CPU with probe files in every model folder "
                "(image/node_facts.py)"
            ),
            "commits": {p["name"]: p["commit"] for p in pins if p["kind"] != "cuda_extension"},
        },
        "packages": {k: sorted(v) for k, v in sorted(packages.items())},
        "features": dict(sorted(features.items())),
        "nodes": {name: describe_node(object_info[name]) for name in sorted(wanted)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="node_facts.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_probe = sub.add_parser("probe", help="create probe files in a ComfyUI folder")
    p_probe.add_argument("comfyui_dir", type=Path)
    p_record = sub.add_parser("record", help="write node_facts.json from /object_info")
    p_record.add_argument("object_info", type=Path, help="saved GET /object_info response")
    p_record.add_argument("--out", type=Path, default=HERE / "node_facts.json")
    p_record.add_argument("--lock", type=Path, default=HERE / "nodes.toml")
    p_record.add_argument("--workflows", type=Path, default=HERE / "workflows")
    p_record.add_argument(
        "--feature",
        action="append",
        default=[],
        metavar="NAME=UI_WORKFLOW.json=SOURCE",
        help="a documented feature: its upstream example workflow and where it came from "
        "(default: keep the features already in --out)",
    )
    args = parser.parse_args(argv)
    if args.command == "probe":
        probe(args.comfyui_dir)
        return 0
    features: dict[str, Any] = {}
    if args.out.exists():
        features = dict(json.loads(args.out.read_text()).get("features", {}))
    for item in args.feature:
        name, path, source = item.split("=", 2)
        features[name] = {"source": source, "class_types": ui_class_types(Path(path))}
    try:
        facts = record(
            json.loads(args.object_info.read_text()), args.lock, args.workflows, features
        )
    except ValueError as exc:
        sys.stderr.write(f"[node_facts] ERROR: {exc}\n")
        return 1
    args.out.write_text(json.dumps(facts, indent=1, sort_keys=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
