"""WorkerImage under Pulumi mocks: a cached BuildKit build for linux/amd64, or a pinned digest."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pulumi
import pytest

from components.config import ImageSettings, parse
from components.worker_image import (
    BAKE_ARG,
    HF_TOKEN_SECRET,
    LABEL_REVISION,
    LABEL_SOURCE,
    LABEL_VERSION,
    WorkerImage,
    context_files,
    context_revision,
    pinned_reference,
)
from tests.components.builders import config_values
from tests.fakes.pulumi_mocks import IMAGE_TYPE, RecordingMocks, mocked, pulumi_loop, run, settle
from tests.fakes.stack_values import MINIMAL, ROOT

pytestmark = pytest.mark.usefixtures(pulumi_loop.__name__)

IMAGE = IMAGE_TYPE
PINNED = re.compile(r"ghcr\.io/acme/comfyui-worker@sha256:[0-9a-f]{64}")
DIGEST = "sha256:" + "c" * 64
HF = "fake-hf-token"


def settings(**values: str) -> ImageSettings:
    """Image settings for MINIMAL + ``values`` (``image_x`` -> ``image.x``), read with no
    ``GHCR_PUSH_TOKEN`` from the environment."""
    return parse(config_values(**values), stack="staging", env={}).image


def build(
    mocks: RecordingMocks, image_settings: ImageSettings, hf_token: str | None = None
) -> WorkerImage:
    """Run a WorkerImage under the current mocks."""
    built: list[WorkerImage] = []

    def make() -> None:
        token = pulumi.Output.secret(hf_token) if hf_token else None
        built.append(WorkerImage("worker", settings=image_settings, hf_token=token))

    run(make)
    return built[0]


def dockerfile_args() -> set[str]:
    """Every ARG name image/Dockerfile declares (global or in a stage)."""
    text = (ROOT / "image" / "Dockerfile").read_text(encoding="utf-8")
    return set(re.findall(r"^ARG\s+([A-Za-z_][A-Za-z0-9_]*)", text, re.MULTILINE))


def test_pinned_digest_builds_nothing_and_is_the_output() -> None:
    """Promotion and rollback: a pinned digest is used as is, no build, no push."""
    with mocked() as mocks:
        image = build(mocks, settings(image_digest=DIGEST))
        assert mocks.of_type(IMAGE) == []
        assert settle(image.image_ref)[0] == f"ghcr.io/acme/comfyui-worker@{DIGEST}"
        assert settle(image.digest)[0] == DIGEST
        assert not image.built


def test_build_pushes_linux_amd64_to_ghcr_with_the_stack_tag() -> None:
    """One push of ghcr.io/<owner>/<name>:<tag> for linux/amd64, from relative paths."""
    with mocked() as mocks:
        build(mocks, settings())
        inputs = mocks.one(IMAGE).inputs
        assert inputs["tags"] == ["ghcr.io/acme/comfyui-worker:staging"]
        assert inputs["push"] is True
        assert inputs["platforms"] == ["linux/amd64"]
        # Relative, so a laptop and a CI runner give the same inputs.
        assert inputs["context"] == {"location": "image"}
        assert inputs["dockerfile"] == {"location": "image/Dockerfile"}
        assert inputs["buildOnPreview"] is False
        (registry,) = inputs["registries"]
        assert (registry["address"], registry["username"]) == ("ghcr.io", "acme")


def test_build_exports_and_imports_a_max_mode_registry_cache() -> None:
    """Every stage is cached in the registry, so a fresh runner reuses the builder stage."""
    with mocked() as mocks:
        build(mocks, settings())
        inputs = mocks.one(IMAGE).inputs
        cache = "ghcr.io/acme/comfyui-worker:staging-buildcache"
        assert inputs["cacheFrom"] == [{"registry": {"ref": cache}}]
        (cache_to,) = inputs["cacheTo"]
        assert cache_to["registry"]["ref"] == cache
        assert cache_to["registry"]["mode"] == "max"


def test_labels_are_resource_labels_and_nothing_else_is_a_build_arg() -> None:
    """OCI labels go through `labels`; without baking there is no build argument at all."""
    with mocked() as mocks:
        build(
            mocks,
            settings(image_version="1.2.3", image_sourceUrl="https://github.com/acme/x"),
            hf_token=HF,
        )
        inputs = mocks.one(IMAGE).inputs
        assert inputs["labels"][LABEL_SOURCE] == "https://github.com/acme/x"
        assert inputs["labels"][LABEL_VERSION] == "1.2.3"
        assert inputs["labels"][LABEL_REVISION].startswith("context-sha256:")
        assert "buildArgs" not in inputs
        assert "secrets" not in inputs, "the HF token is only handed over when baking"


def test_registry_token_is_only_a_secret_registry_credential() -> None:
    """The push token logs in to GHCR; it is secret and in no label, arg or build secret."""
    with mocked() as mocks:
        build(mocks, settings(image_bakeModelGroups="flux_dev_fp8"), hf_token=HF)
        registered = mocks.one(IMAGE)
        assert registered.inputs["registries"][0]["password"] == MINIMAL["image.registryToken"]
        assert "registries" in registered.secret_paths
        others = {k: v for k, v in registered.inputs.items() if k != "registries"}
        assert MINIMAL["image.registryToken"] not in str(others)


def test_baking_passes_the_groups_as_the_one_build_arg_and_the_hf_token_as_a_secret() -> None:
    """BAKE_MODEL_GROUPS is the only build arg; the HF token is the BuildKit secret hf_token."""
    with mocked() as mocks:
        build(mocks, settings(image_bakeModelGroups="flux_dev_fp8,background_removal"), HF)
        registered = mocks.one(IMAGE)
        inputs = registered.inputs
        assert inputs["buildArgs"] == {BAKE_ARG: "flux_dev_fp8,background_removal"}
        assert inputs["secrets"] == {HF_TOKEN_SECRET: HF}
        assert "secrets" in registered.secret_paths
        assert HF not in str(inputs["buildArgs"]) + str(inputs["labels"])
        # A rotated token builds the same image: it alone must not rebuild.
        assert inputs["ignoreSecretsInDiffCalculation"] == [HF_TOKEN_SECRET]


def test_every_build_arg_and_secret_the_program_passes_is_one_the_dockerfile_takes() -> None:
    """Build args are ARGs of image/Dockerfile; the HF secret id is the one it mounts."""
    with mocked() as mocks:
        build(mocks, settings(image_bakeModelGroups="flux_dev_fp8"), HF)
        inputs = mocks.one(IMAGE).inputs
    assert set(inputs["buildArgs"]) <= dockerfile_args()
    dockerfile = (ROOT / "image" / "Dockerfile").read_text(encoding="utf-8")
    for secret in inputs["secrets"]:
        assert re.search(rf"--mount=type=secret,id={secret}\b", dockerfile), secret


def test_the_revision_is_the_context_hash_unless_configured() -> None:
    """Default: the hash of image/ (what is built); image.revision overrides it."""
    with mocked() as mocks:
        build(mocks, settings())
        label = mocks.one(IMAGE).inputs["labels"][LABEL_REVISION]
    assert label == context_revision(ROOT / "image")
    with mocked() as mocks:
        build(mocks, settings(image_revision="v1.2.3"))
        assert mocks.one(IMAGE).inputs["labels"][LABEL_REVISION] == "v1.2.3"


def test_build_output_is_pinned_by_the_pushed_digest() -> None:
    """Downstream gets repository@sha256 from the push, never a mutable tag."""
    with mocked() as mocks:
        image = build(mocks, settings())
        ref, _ = settle(image.image_ref)
        assert PINNED.fullmatch(ref), ref
        assert image.built


def test_source_label_defaults_to_the_owners_repository() -> None:
    """Without image.sourceUrl the package links to github.com/<owner>/comfyui-runpod."""
    assert settings().source_url == "https://github.com/acme/comfyui-runpod"


def test_registry_answer_without_digest_is_an_error() -> None:
    """A push that reports no sha256 digest must not yield an unpinned reference."""
    with pytest.raises(ValueError, match="no usable digest"):
        pinned_reference("ghcr.io/acme/comfyui-worker", "")
    assert pinned_reference("ghcr.io/a/b", DIGEST) == f"ghcr.io/a/b@{DIGEST}"


# ----------------------------------------------------------------- the context hash


@pytest.fixture
def context(tmp_path: Path) -> Path:
    """A copy of image/ to change."""
    copy = tmp_path / "image"
    shutil.copytree(ROOT / "image", copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_context_hash_ignores_mtimes_and_files_the_dockerignore_excludes(context: Path) -> None:
    """Touching files or adding ignored ones (caches, models, .env) changes nothing."""
    before = context_revision(context)
    os.utime(context / "start.sh", (1, 1))
    (context / "worker" / "__pycache__").mkdir()
    (context / "worker" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (context / "models").mkdir()
    (context / "models" / "big.safetensors").write_bytes(b"weights")
    (context / ".env").write_text("HF_TOKEN=hf_x\n")
    assert context_revision(context) == before
    assert "models/big.safetensors" not in context_files(context)


def test_context_hash_changes_with_content_names_and_the_executable_bit(context: Path) -> None:
    """What the image is built from changes the hash: content, a new file, a mode."""
    before = context_revision(context)
    start = context / "start.sh"
    original = start.read_bytes()
    start.write_bytes(original + b"\n# changed\n")
    assert context_revision(context) != before
    start.write_bytes(original)
    assert context_revision(context) == before
    (context / "workflows" / "new.json").write_text("{}")
    assert context_revision(context) != before
    (context / "workflows" / "new.json").unlink()
    start.chmod(0o644)
    assert context_revision(context) != before


def test_context_hash_does_not_depend_on_where_the_tree_is(context: Path, tmp_path: Path) -> None:
    """Two checkouts of the same tree (any directory, any umask) hash the same."""
    other = tmp_path / "elsewhere" / "image"
    shutil.copytree(context, other)
    for path in other.rglob("*"):
        if path.is_file():
            path.chmod(0o775 if os.access(path, os.X_OK) else 0o664)
    assert context_revision(other) == context_revision(context)
