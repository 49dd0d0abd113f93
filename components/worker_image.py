"""WorkerImage: the worker image on GHCR, as a reference pinned by digest.

Owns: building ``image/`` for ``linux/amd64`` with pulumi-docker, pushing it to
``ghcr.io/<owner>/<name>:<tag>`` with the previous push of that tag as build cache, the OCI
labels (``org.opencontainers.image.source`` links the package to its repository; revision;
version), and turning the pushed manifest into ``ghcr.io/<owner>/<name>@sha256:<digest>``.
When the stack pins ``image.digest`` nothing is built and that digest is the output: this is
how prod promotes what staging tested, and how any stack rolls its image back.

Deliberately does not own: the Dockerfile (``image/``), or registry credentials for pulling
(RunPod gets its own read-only credential). The build never receives a secret: labels are
the only build arguments, and they are public by nature.
"""

from __future__ import annotations

import re

import pulumi
import pulumi_docker as docker

from components.config import ImageSettings

PLATFORM = "linux/amd64"
#: OCI label -> build argument ``image/Dockerfile`` turns into that label (``ARG`` + ``LABEL``).
LABEL_BUILD_ARGS = {
    "org.opencontainers.image.source": "IMAGE_SOURCE",
    "org.opencontainers.image.revision": "GIT_COMMIT",
    "org.opencontainers.image.version": "IMAGE_VERSION",
}
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def pinned_reference(repository: str, repo_digest: str) -> str:
    """``<repository>@sha256:...`` from a pushed ``repo[:tag]@sha256:...`` digest."""
    _, _, digest = repo_digest.partition("@")
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"registry returned no usable digest for {repository}: {repo_digest!r}")
    return f"{repository}@{digest}"


def build_args(settings: ImageSettings) -> dict[str, str]:
    """Build arguments: the OCI label values, and inline cache metadata for the next build."""
    values = {
        "org.opencontainers.image.source": settings.source_url,
        "org.opencontainers.image.revision": settings.revision,
        "org.opencontainers.image.version": settings.version,
    }
    args = {LABEL_BUILD_ARGS[label]: value for label, value in values.items()}
    # Without inline cache metadata the pushed image cannot serve as cache_from.
    args["BUILDKIT_INLINE_CACHE"] = "1"
    return args


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
        context: str = "image",
        dockerfile: str = "image/Dockerfile",
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("comfyui-runpod:index:WorkerImage", name, None, opts)
        repository = settings.repository
        self.built = settings.digest is None
        if settings.digest is not None:
            ref = pulumi.Output.from_input(f"{repository}@{settings.digest}")
        else:
            if settings.registry_token is None:
                raise ValueError("image.registryToken is required to build the worker image")
            image = docker.Image(
                f"{name}-image",
                image_name=f"{repository}:{settings.tag}",
                build=docker.DockerBuildArgs(
                    context=context,
                    dockerfile=dockerfile,
                    platform=PLATFORM,
                    args=build_args(settings),
                    cache_from=docker.CacheFromArgs(images=[f"{repository}:{settings.tag}"]),
                ),
                registry=docker.RegistryArgs(
                    server=settings.registry,
                    username=settings.registry_username,
                    password=settings.registry_token,
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            ref = image.repo_digest.apply(lambda pushed: pinned_reference(repository, pushed))
        self.image_ref = ref
        self.digest = ref.apply(lambda reference: reference.partition("@")[2])
        self.register_outputs({"image_ref": self.image_ref, "digest": self.digest})
