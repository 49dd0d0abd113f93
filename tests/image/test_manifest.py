"""The model manifest (image/worker/manifest.py): one parser for the downloader, the bake
and the handler's missing-model hints."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from worker import manifest

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "image" / "models.toml"


def test_repo_manifest_is_valid_and_covers_every_group() -> None:
    """models.toml parses, has no invented hashes format-wise, and every group selects files."""
    entries = manifest.load_manifest(MANIFEST)
    groups = {g for e in entries for g in e.groups}
    assert groups == {
        "wan22_t2v",
        "wan22_t2v_fast",
        "turbodiffusion",
        "steadydancer",
        "flux_dev_fp8",
        "background_removal",
        "upscale",
    }
    paths = {e.path for e in manifest.select(entries, ["wan22_t2v", "flux_dev_fp8"])}
    assert "diffusion_models/wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors" in paths
    assert "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors" in paths
    assert "vae/wan_2.1_vae.safetensors" in paths
    assert "checkpoints/flux1-dev-fp8.safetensors" in paths
    by_name = {e.name: e for e in entries}
    assert by_name["birefnet"].sha256 == (
        "9ab37426bf4de0567af6b5d21b16151357149139362e6e8992021b8ce356a154"
    )
    assert by_name["flux1-dev-fp8"].sha256 is None  # only a prefix is known: not invented


def test_toggles_and_model_groups_select_the_same_way() -> None:
    """download_wan22=true selects the WAN groups; MODEL_GROUPS and toggles combine."""
    env = {"download_wan22": "true", "download_flux": "false", "MODEL_GROUPS": "background_removal"}
    assert manifest.groups_from_env(env) == ["background_removal", "wan22_t2v", "wan22_t2v_fast"]
    assert manifest.groups_from_env({"download_steadydancer": "1"}) == ["steadydancer"]


def test_handler_hints_read_the_same_manifest_leniently(tmp_path: Path) -> None:
    """File name -> groups from models.toml; an unreadable manifest gives no hint, no error."""
    table = manifest.groups_by_file(MANIFEST)
    assert "wan22_t2v" in table["wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"]
    broken = tmp_path / "models.toml"
    broken.write_text("[[model]\n")
    assert manifest.groups_by_file(broken) == {}
    assert manifest.groups_by_file(tmp_path / "absent.toml") == {}


def test_manifest_path_honours_model_manifest() -> None:
    """MODEL_MANIFEST wins when set; blank or unset means models.toml beside the package."""
    assert manifest.manifest_path({"MODEL_MANIFEST": "/m/x.toml"}) == Path("/m/x.toml")
    assert manifest.manifest_path({"MODEL_MANIFEST": "  "}) == MANIFEST
    assert manifest.manifest_path({}) == MANIFEST


def test_malformed_manifest_lists_every_problem(tmp_path: Path) -> None:
    """Each bad entry is named in one error, so one edit fixes them all."""
    path = tmp_path / "models.toml"
    path.write_text(
        '[[model]]\nname = "a"\nurl = "ftp://x/a"\npath = "/abs/a"\ngroups = ["g"]\n'
        '[[model]]\nname = "b"\nurl = "https://x/b"\npath = "vae/b"\ngroups = ["g"]\n'
        'sha256 = "ABC"\nsize = -1\n'
        '[[model]]\nname = "c"\n'
    )
    with pytest.raises(manifest.ManifestError) as raised:
        manifest.load_manifest(path)
    message = str(raised.value)
    for fragment in (
        "model #1 (a): path must be relative",
        "model #1 (a): url must be http(s)",
        "model #2 (b): sha256 must be 64",
        "model #2 (b): size must be a non-negative",
        "model #3 (c): missing url, path, groups",
    ):
        assert fragment in message


def _worker_imports(module: Path) -> set[str]:
    """Worker modules ``module`` imports (``from worker import x``, ``from worker.x import``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "worker":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("worker."):
            found.add(str(node.module).removeprefix("worker."))
    return found


def test_bake_layer_copies_every_module_the_downloader_imports() -> None:
    """The Dockerfile's early model-tooling COPY (before the bake slots) carries models.py and
    every worker module it needs, or baking fails at import in the image build."""
    dockerfile = (REPO / "image" / "Dockerfile").read_text(encoding="utf-8")
    copy = re.search(r"^COPY (worker/\S+ )+/opt/worker/worker/$", dockerfile, re.MULTILINE)
    assert copy is not None, "no COPY of single worker modules before the bake slots"
    copied = set(copy.group(0).split()[1:-1])
    needed, todo = {"__init__", "models"}, ["models"]
    while todo:
        for name in _worker_imports(REPO / "image" / "worker" / f"{todo.pop()}.py") - needed:
            needed.add(name)
            todo.append(name)
    assert {f"worker/{name}.py" for name in needed} <= copied
