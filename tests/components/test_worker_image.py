"""WorkerImage under Pulumi mocks: build for linux/amd64 with labels, or take a pinned digest."""

from __future__ import annotations

import re

import pytest

from components.config import ImageSettings, parse
from components.worker_image import LABEL_BUILD_ARGS, WorkerImage, pinned_reference
from tests.fakes.pulumi_mocks import RecordingMocks, mocked, pulumi_loop, run, settle
from tests.fakes.stack_values import MINIMAL, ROOT

pytestmark = pytest.mark.usefixtures(pulumi_loop.__name__)

IMAGE = "docker:index/image:Image"
PINNED = re.compile(r"ghcr\.io/acme/comfyui-worker@sha256:[0-9a-f]{64}")
DIGEST = "sha256:" + "c" * 64


def settings(**values: str) -> ImageSettings:
    """Image settings for MINIMAL + ``values`` (``image_x`` -> ``image.x``)."""
    changed = {k.replace("_", ".", 1): v for k, v in values.items()}
    return parse({**MINIMAL, **changed}, stack="staging").image


def build(mocks: RecordingMocks, image_settings: ImageSettings) -> WorkerImage:
    """Run a WorkerImage under the current mocks."""
    built: list[WorkerImage] = []
    run(lambda: built.append(WorkerImage("worker", settings=image_settings)))
    return built[0]


def test_pinned_digest_builds_nothing_and_is_the_output() -> None:
    """Promotion and rollback: a pinned digest is used as is, no build, no push."""
    with mocked() as mocks:
        image = build(mocks, settings(image_digest=DIGEST))
        assert mocks.of_type(IMAGE) == []
        assert settle(image.image_ref)[0] == f"ghcr.io/acme/comfyui-worker@{DIGEST}"
        assert settle(image.digest)[0] == DIGEST
        assert not image.built


def test_build_targets_linux_amd64_on_ghcr_with_the_stack_tag() -> None:
    """The build pushes ghcr.io/<owner>/<name>:<tag> for linux/amd64, caching from that tag."""
    with mocked() as mocks:
        build(mocks, settings(image_revision="0123abc"))
        inputs = mocks.one(IMAGE).inputs
        assert inputs["imageName"] == "ghcr.io/acme/comfyui-worker:staging"
        assert inputs["build"]["platform"] == "linux/amd64"
        assert inputs["build"]["context"] == "image"
        assert inputs["build"]["cacheFrom"]["images"] == ["ghcr.io/acme/comfyui-worker:staging"]
        assert inputs["registry"]["server"] == "ghcr.io"


def test_build_output_is_pinned_by_digest() -> None:
    """Downstream gets repository@sha256, never a mutable tag."""
    with mocked() as mocks:
        image = build(mocks, settings())
        ref, _ = settle(image.image_ref)
        assert PINNED.fullmatch(ref), ref
        assert image.built


def test_oci_labels_are_build_args_and_no_secret_is() -> None:
    """Labels link the package to its repo; the registry token never enters the build."""
    with mocked() as mocks:
        build(
            mocks,
            settings(
                image_revision="0123abc",
                image_version="1.2.3",
                image_sourceUrl="https://github.com/acme/comfyui-runpod",
            ),
        )
        registered = mocks.one(IMAGE)
        args = registered.inputs["build"]["args"]
        assert args[LABEL_BUILD_ARGS["org.opencontainers.image.source"]] == (
            "https://github.com/acme/comfyui-runpod"
        )
        assert args[LABEL_BUILD_ARGS["org.opencontainers.image.revision"]] == "0123abc"
        assert args[LABEL_BUILD_ARGS["org.opencontainers.image.version"]] == "1.2.3"
        assert MINIMAL["image.registryToken"] not in str(registered.inputs["build"])
        assert registered.inputs["registry"]["password"] == MINIMAL["image.registryToken"]
        assert "registry" in registered.secret_paths
        assert not any(path.startswith("build") for path in registered.secret_paths)


def test_source_label_defaults_to_the_owners_repository() -> None:
    """Without image.sourceUrl the package links to github.com/<owner>/comfyui-runpod."""
    assert settings().source_url == "https://github.com/acme/comfyui-runpod"


def test_registry_answer_without_digest_is_an_error() -> None:
    """A push that reports no sha256 digest must not yield an unpinned reference."""
    with pytest.raises(ValueError, match="no usable digest"):
        pinned_reference("ghcr.io/acme/comfyui-worker", "ghcr.io/acme/comfyui-worker:staging")
    assert (
        pinned_reference("ghcr.io/a/b", f"ghcr.io/a/b:staging@{DIGEST}") == f"ghcr.io/a/b@{DIGEST}"
    )


def test_the_dockerfile_declares_no_label_build_args() -> None:
    """Labels come from the build resource; image/Dockerfile declares none of these ARGs."""
    dockerfile = (ROOT / "image" / "Dockerfile").read_text(encoding="utf-8")
    for arg in LABEL_BUILD_ARGS.values():
        assert not re.search(rf"^ARG {arg}\b", dockerfile, re.MULTILINE), f"ARG {arg}"
