"""WorkerImage: the worker image on GHCR, as a reference pinned by digest.

Owns: building ``image/`` with pulumi-docker-build (BuildKit) for ``linux/amd64`` and pushing
it to ``ghcr.io/<owner>/<name>:<tag>``; a registry build cache at ``<tag>-buildcache``
exported with ``mode=max`` (every stage, so torch and the custom nodes in the builder stage
come from cache on a fresh runner); the OCI labels as the build's ``labels`` (never build
arguments); ``BAKE_MODEL_GROUPS`` as the only build argument, and the Hugging Face token only
as the BuildKit secret ``hf_token``, both only when baking; and turning the pushed digest into
``ghcr.io/<owner>/<name>@sha256:<digest>``. When the stack pins ``image.digest`` nothing is
built and that digest is the output: this is how prod promotes what staging tested, and how
any stack rolls its image back.

The revision label is the content hash of the build context (``image/`` minus what
``image/.dockerignore`` excludes), not the commit: a commit that changes nothing under
``image/`` gives identical build inputs, so no rebuild, no new digest and no endpoint roll.

Deliberately does not own: the Dockerfile (``image/``), or registry credentials for pulling
(RunPod gets its own read-only credential).
"""

from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path

import pulumi
import pulumi_docker_build as docker_build

from components import Options
from components.config import ImageSettings

PLATFORM = docker_build.Platform.LINUX_AMD64
#: The one build argument the program passes (and only when baking); image/Dockerfile declares it.
BAKE_ARG = "BAKE_MODEL_GROUPS"
#: Id of the BuildKit secret the Dockerfile's bake step mounts for the Hugging Face token.
HF_TOKEN_SECRET = "hf_token"  # noqa: S105 (a secret's id, not its value)
LABEL_SOURCE = "org.opencontainers.image.source"
LABEL_REVISION = "org.opencontainers.image.revision"
LABEL_VERSION = "org.opencontainers.image.version"
#: Where ``context`` and ``dockerfile`` are relative to: the project (the program's cwd).
PROJECT_ROOT = Path(__file__).resolve().parents[1]
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def pinned_reference(repository: str, digest: str) -> str:
    """``<repository>@sha256:...`` from the digest a push reported."""
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"registry returned no usable digest for {repository}: {digest!r}")
    return f"{repository}@{digest}"


def cache_reference(settings: ImageSettings) -> str:
    """The registry build cache of this stack's tag: ``<repository>:<tag>-buildcache``."""
    return f"{settings.repository}:{settings.tag}-buildcache"


def context_files(context: Path, dockerfile: str = "Dockerfile") -> list[str]:
    """Files of the build context, relative and sorted, after ``.dockerignore``.

    Uses docker-py's implementation of Docker's ignore rules (patterns anchored at the
    context root, ``**``, ``!`` exceptions); the Dockerfile is always part of the context.
    """
    # Imported here: docker-py pulls in paramiko (~0.5 s), which a stack that pins a
    # digest (prod) should not pay on every run.
    from docker.utils.build import exclude_paths  # noqa: PLC0415

    ignore = context / ".dockerignore"
    patterns = []
    if ignore.is_file():
        lines = (line.strip() for line in ignore.read_text(encoding="utf-8").splitlines())
        patterns = [line for line in lines if line and not line.startswith("#")]
    paths = exclude_paths(str(context), patterns, dockerfile=dockerfile)
    return sorted(path for path in paths if not (context / path).is_dir())


def context_revision(context: Path, dockerfile: str = "Dockerfile") -> str:
    """``context-sha256:<hex>``: the content hash of the build context.

    Covers each file's path, content and executable bit (what a checkout reproduces; full
    modes depend on the umask); symlinks count by their target. Commits, mtimes and files
    the context excludes do not count.
    """
    digest = hashlib.sha256()
    for relative in context_files(context, dockerfile):
        path = context / relative
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            kind, content = "l", str(path.readlink()).encode()
        else:
            kind = "x" if info.st_mode & 0o111 else "f"
            content = path.read_bytes()
        digest.update(f"{relative}\0{kind}\0".encode())
        digest.update(hashlib.sha256(content).digest())
    return f"context-sha256:{digest.hexdigest()}"


def labels(settings: ImageSettings, revision: str) -> dict[str, str]:
    """OCI labels: source links the GHCR package to its repository; no per-commit value."""
    return {
        LABEL_SOURCE: settings.source_url,
        LABEL_REVISION: revision,
        LABEL_VERSION: settings.version,
    }


def build_args(settings: ImageSettings) -> dict[str, str]:
    """``BAKE_MODEL_GROUPS`` when the stack bakes models, else nothing."""
    if not settings.bake_model_groups:
        return {}
    return {BAKE_ARG: ",".join(settings.bake_model_groups)}


class WorkerImage(pulumi.ComponentResource):
    """The worker image, built and pushed, or taken as pinned."""

    image_ref: pulumi.Output[str]
    """``ghcr.io/<owner>/<name>@sha256:<64 hex>``: what RunPod must pull."""
    digest: pulumi.Output[str]
    """``sha256:<64 hex>``: what to pin in ``image.digest`` to promote or roll back."""
    built: bool
    """Whether this stack builds the image (known at plan time)."""

    def __init__(
        self,
        name: str,
        *,
        settings: ImageSettings,
        hf_token: pulumi.Output[str] | None = None,
        context: str = "image",
        dockerfile: str = "image/Dockerfile",
        opts: Options = None,
    ) -> None:
        super().__init__("comfyui-runpod:index:WorkerImage", name, None, opts)
        repository = settings.repository
        self.built = settings.digest is None
        if settings.digest is not None:
            ref = pulumi.Output.from_input(f"{repository}@{settings.digest}")
        else:
            if settings.registry_token is None:
                raise ValueError("image.registryToken is required to build the worker image")
            # Paths stay relative: they are inputs, and an absolute path would differ between
            # a laptop and CI and force a rebuild.
            revision = settings.revision or context_revision(
                PROJECT_ROOT / context, Path(dockerfile).name
            )
            baking = bool(settings.bake_model_groups)
            secrets = {HF_TOKEN_SECRET: hf_token} if baking and hf_token is not None else None
            cache = cache_reference(settings)
            image = docker_build.Image(
                f"{name}-image",
                tags=[f"{repository}:{settings.tag}"],
                push=True,
                platforms=[PLATFORM],
                context=docker_build.BuildContextArgs(location=context),
                dockerfile=docker_build.DockerfileArgs(location=dockerfile),
                labels=labels(settings, revision),
                build_args=build_args(settings) or None,
                secrets=secrets,
                # A rotated HF token builds the same image: no rebuild for it alone.
                ignore_secrets_in_diff_calculation=[HF_TOKEN_SECRET] if secrets else None,
                cache_from=[
                    docker_build.CacheFromArgs(
                        registry=docker_build.CacheFromRegistryArgs(ref=cache)
                    )
                ],
                cache_to=[
                    docker_build.CacheToArgs(
                        registry=docker_build.CacheToRegistryArgs(
                            ref=cache, mode=docker_build.CacheMode.MAX
                        )
                    )
                ],
                registries=[
                    docker_build.RegistryArgs(
                        address=settings.registry,
                        username=settings.registry_username,
                        password=settings.registry_token,
                    )
                ],
                # Previews (every PR) do not spend a CUDA build; `up` builds, and the
                # Dockerfile is linted by the test suite.
                build_on_preview=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            ref = image.digest.apply(lambda digest: pinned_reference(repository, digest))
        self.image_ref = ref
        self.digest = ref.apply(lambda reference: reference.partition("@")[2])
        self.register_outputs({"image_ref": self.image_ref, "digest": self.digest})
