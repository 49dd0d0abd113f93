"""WorkerWiring: what every RunPod worker (serverless or pod) is given, and how it gets there.

Owns: the inputs that wire a worker to its image, its R2 bucket and the GHCR pull
credential (`WorkerWiring`); declaring, under one component, a RunPod account secret per
credential (R2 access key id, R2 secret access key, and the Hugging Face token when given)
together with the `{{ RUNPOD_SECRET_<name> }}` env references to them and the GHCR registry
credential (`declare_worker_credentials`), plus a revision marker derived from the
secrets' salted hashes that changes when one of them rotates; the env every worker shares
(`worker_env`), in which credentials appear only as those references; and the image's
CUDA version, read from the one `ARG CUDA_VERSION` line of `image/Dockerfile`
(`image_cuda_version`), with the exact version list a pod template needs
(`cuda_versions_from`).

Deliberately does not own: the resources that run workers (the endpoint, template and
volumes of `ComfyServerless` and `VideoPod`), the mode-specific env entries and the naming
scheme (each component passes its own), or where the values come from (stack config,
`OutputBucket`, `WorkerImage`, wired together in `__main__.py`). It declares no component
of its own: its children are parented to the caller, so their URNs are the caller's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pulumi

from components.runpod import Registry, Secret, secret_reference

DOCKERFILE: Final = Path(__file__).resolve().parents[1] / "image" / "Dockerfile"
"""The worker image's Dockerfile: its `ARG CUDA_VERSION` is the image's CUDA version."""
CUDA_ARG: Final = re.compile(r"^ARG CUDA_VERSION=(\d+\.\d+)$", re.MULTILINE)
KNOWN_CUDA_VERSIONS: Final = (
    "11.8",
    "12.0",
    "12.1",
    "12.2",
    "12.3",
    "12.4",
    "12.5",
    "12.6",
    "12.7",
    "12.8",
    "12.9",
    "13.0",
)
"""CUDA versions RunPod hosts report, oldest first, for the one place v2 has no floor: a
template's `allowedCudaVersions` is an exact set (the v2 spec gives templates no
`minCudaVersion`), matched exactly against what a host reports (discoverable per GPU type
in the catalog). RunPod's REST v1 spec enumerated 11.8..12.8; 12.9 and 13.0 are the newer
values RunPod clients list (runpod-sdk 0.6 `CudaVersion`). A version missing here is a
host the video pod template excludes, so add new ones as RunPod offers them. Endpoints do
not use this list: they take `gpu.minCudaVersion`, an open floor compared numerically."""
REVISION_VARIABLE: Final = "WORKER_ENV_REVISION"
"""Env variable whose value changes when a RunPod secret referenced by the env gets a new
value, so the endpoint starts a new release (and the pod template records it)."""


class ImageCudaVersionError(ValueError):
    """The Dockerfile does not declare the image's CUDA version where the program reads it."""


def image_cuda_version(dockerfile: Path = DOCKERFILE) -> str:
    """The `major.minor` of the image's one `ARG CUDA_VERSION=<major.minor>` line."""
    try:
        text = dockerfile.read_text(encoding="utf-8")
    except OSError as exc:
        raise ImageCudaVersionError(
            f"cannot read {dockerfile} to learn the worker image's CUDA version: {exc}"
        ) from None
    found = CUDA_ARG.findall(text)
    if len(found) != 1:
        raise ImageCudaVersionError(
            f"{dockerfile} must declare the image's CUDA version exactly once as a line "
            f"`ARG CUDA_VERSION=<major.minor>` (e.g. `ARG CUDA_VERSION=12.8`), found "
            f"{len(found)}; RunPod hosts are restricted to that version or newer"
        )
    return str(found[0])


def cuda_versions_from(minimum: str) -> tuple[str, ...]:
    """Every known CUDA version at or above `minimum` (compared numerically): the exact set
    a pod template's `allowedCudaVersions` needs."""

    def key(version: str) -> tuple[int, int]:
        major, minor = version.split(".")
        return int(major), int(minor)

    allowed = tuple(v for v in KNOWN_CUDA_VERSIONS if key(v) >= key(minimum))
    if minimum not in allowed:
        raise ImageCudaVersionError(
            f"CUDA {minimum} is not a version RunPod hosts report "
            f"({', '.join(KNOWN_CUDA_VERSIONS)}); fix `ARG CUDA_VERSION` in image/Dockerfile "
            "or add the version to "
            "KNOWN_CUDA_VERSIONS in components/worker_wiring.py"
        )
    return allowed


@dataclass(frozen=True, kw_only=True)
class WorkerWiring:
    """What every RunPod worker (serverless or pod) is given: image, R2, pull credential.

    The registry credential is the read-only pull token (``image.pullToken``); the push
    token (``image.registryToken``) stays with the build and never reaches RunPod.
    """

    image: pulumi.Input[str]
    """Worker image, fully qualified and pinned by digest (`WorkerImage.image_ref`)."""
    r2_endpoint: pulumi.Input[str]
    """R2 S3 endpoint URL (`R2_ENDPOINT`)."""
    r2_bucket: pulumi.Input[str]
    """Bucket receiving every output (`R2_BUCKET`)."""
    r2_prefix: pulumi.Input[str]
    """Key prefix of outputs (`R2_PREFIX`)."""
    r2_access_key_id: pulumi.Input[str]
    """Worker's R2 access key id (secret Output); stored as a RunPod secret."""
    r2_secret_access_key: pulumi.Input[str]
    """Worker's R2 secret access key (secret Output); stored as a RunPod secret."""
    registry_username: pulumi.Input[str]
    """GHCR user owning the pull token."""
    registry_token: pulumi.Input[str]
    """GHCR token with `read:packages` (secret Output)."""
    r2_public_base_url: pulumi.Input[str] | None = None
    """Public URL objects are served from (`R2_PUBLIC_BASE_URL`), if any."""
    hf_token: pulumi.Input[str] | None = None
    """Hugging Face token for gated models (secret Output), if any."""
    cuda_version: str | None = None
    """The image's CUDA `major.minor` (`image_cuda_version()`): hosts must report it or a
    newer one (the endpoint's `gpu.minCudaVersion`, the pod template's exact list from
    `cuda_versions_from`); None allows any host."""


@dataclass(frozen=True, kw_only=True)
class WorkerCredentials:
    """The credentials `declare_worker_credentials` declared for one component."""

    references: Mapping[str, pulumi.Output[str]]
    """Env variable -> `{{ RUNPOD_SECRET_<name> }}`, resolved from the secret's output name
    so whatever uses it waits for the secret."""
    secret_names: Mapping[str, str]
    """Env variable -> RunPod secret name it references."""
    registry: Registry
    """The GHCR credential the worker pulls its image with."""
    revision: pulumi.Output[str]
    """Changes whenever one of these secrets gets a new value (derived from each secret's
    salted value hash and RunPod's `valueLastUpdatedAt`, never from a value)."""


def declare_worker_credentials(
    name: str,
    worker: WorkerWiring,
    *,
    parent: pulumi.Resource,
    secret_name_prefix: str,
    registry_name: str,
    described_as: str,
    adopt_existing: bool = False,
    extra: Sequence[tuple[str, str, pulumi.Input[str]]] = (),
) -> WorkerCredentials:
    """Declare one RunPod secret per credential of `worker` and its GHCR registry credential.

    Children are named `f"{name}-<role>"` (`-r2-access-key-id`, `-r2-secret-access-key`,
    `-hf-token` when `worker.hf_token` is set, `-ghcr`) and parented to `parent` only.
    RunPod names are account-unique: each secret is `f"{secret_name_prefix}_<role>"` with
    underscores, the registry credential is `registry_name`. A secret's description reads
    `"<VARIABLE> of <described_as> (managed by Pulumi)"`. `adopt_existing` takes over
    same-named objects that predate the stack instead of failing on them. `extra` adds a
    mode's own credentials as `(VARIABLE, role, value)`, declared the same way.
    """
    child = pulumi.ResourceOptions(parent=parent)
    references: dict[str, pulumi.Output[str]] = {}
    names: dict[str, str] = {}
    markers: list[pulumi.Output[str]] = []
    for variable, role, value in (*_credentials(worker), *extra):
        secret_name = f"{secret_name_prefix}_{role.replace('-', '_')}"
        secret = Secret(
            f"{name}-{role}",
            name=secret_name,
            value=value,
            description=f"{variable} of {described_as} (managed by Pulumi)",
            adopt_existing=adopt_existing,
            opts=child,
        )
        # The reference reads the secret's output name, so its consumer waits for it.
        references[variable] = secret.name.apply(secret_reference)
        names[variable] = secret_name
        markers.append(
            pulumi.Output.all(variable, secret.value_hash, secret.value_last_updated_at).apply(
                _marker
            )
        )

    registry = Registry(
        f"{name}-ghcr",
        name=registry_name,
        username=worker.registry_username,
        password=worker.registry_token,
        adopt_existing=adopt_existing,
        opts=child,
    )
    revision = pulumi.Output.all(*markers).apply(_revision)
    return WorkerCredentials(
        references=references, secret_names=names, registry=registry, revision=revision
    )


def _credentials(worker: WorkerWiring) -> list[tuple[str, str, pulumi.Input[str]]]:
    """`(VARIABLE, role, value)` of every credential a worker gets from its wiring."""
    credentials: list[tuple[str, str, pulumi.Input[str]]] = [
        ("R2_ACCESS_KEY_ID", "r2-access-key-id", worker.r2_access_key_id),
        ("R2_SECRET_ACCESS_KEY", "r2-secret-access-key", worker.r2_secret_access_key),
    ]
    if worker.hf_token is not None:
        credentials.append(("HF_TOKEN", "hf-token", worker.hf_token))
    return credentials


def _marker(parts: Sequence[str]) -> str:
    variable, value_hash, updated_at = parts
    return f"{variable}={value_hash}@{updated_at}"


def _revision(markers: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(markers)).encode()).hexdigest()[:16]


def worker_env(
    worker: WorkerWiring,
    *,
    mode: str,
    model_groups: Sequence[str],
    references: Mapping[str, pulumi.Input[str]],
    mode_env: Mapping[str, pulumi.Input[str]] | None = None,
    revision: pulumi.Input[str] | None = None,
) -> dict[str, pulumi.Input[str]]:
    """The env every worker shares, with the mode's own entries.

    `MODE`, the R2 target (`R2_ENDPOINT`, `R2_BUCKET`, `R2_PREFIX`), `MODEL_GROUPS`, then
    `mode_env` (e.g. `JOB_TIMEOUT_S`, `ENABLE_R2_SYNC`), the credential `references`,
    `WORKER_ENV_REVISION` (`WorkerCredentials.revision`: a new secret value changes the
    env, which starts a new endpoint release), and `R2_PUBLIC_BASE_URL` when the bucket
    has a public URL. `mode_env` may not redefine a shared variable.
    """
    env: dict[str, pulumi.Input[str]] = {
        "MODE": mode,
        "R2_ENDPOINT": worker.r2_endpoint,
        "R2_BUCKET": worker.r2_bucket,
        "R2_PREFIX": worker.r2_prefix,
        "MODEL_GROUPS": ",".join(model_groups),
    }
    extra = dict(mode_env or {})
    shared = {*env, *references, "R2_PUBLIC_BASE_URL", REVISION_VARIABLE}
    if clashes := sorted(shared.intersection(extra)):
        raise ValueError(f"mode_env may not redefine shared worker variables: {clashes}")
    env.update(extra)
    env.update(references)
    if revision is not None:
        env[REVISION_VARIABLE] = revision
    if worker.r2_public_base_url is not None:
        env["R2_PUBLIC_BASE_URL"] = worker.r2_public_base_url
    return env
