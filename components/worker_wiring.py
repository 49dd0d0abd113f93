"""WorkerWiring: what every RunPod worker (serverless or pod) is given, and how it gets there.

Owns: the inputs that wire a worker to its image, its R2 bucket and the GHCR pull
credential (`WorkerWiring`); declaring, under one component, a RunPod account secret per
credential (R2 access key id, R2 secret access key, and the Hugging Face token when given)
together with the `{{ RUNPOD_SECRET_<name> }}` env references to them and the GHCR registry
credential (`declare_worker_credentials`); and the env every worker shares
(`worker_env`), in which credentials appear only as those references.

Deliberately does not own: the resources that run workers (the endpoint, template and
volumes of `ComfyServerless` and `VideoPod`), the mode-specific env entries and the naming
scheme (each component passes its own), or where the values come from (stack config,
`OutputBucket`, `WorkerImage`, wired together in `__main__.py`). It declares no component
of its own: its children are parented to the caller, so their URNs are the caller's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi

from components.runpod import Registry, Secret, secret_reference


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


def declare_worker_credentials(
    name: str,
    worker: WorkerWiring,
    *,
    parent: pulumi.Resource,
    secret_name_prefix: str,
    registry_name: str,
    described_as: str,
) -> WorkerCredentials:
    """Declare one RunPod secret per credential of `worker` and its GHCR registry credential.

    Children are named `f"{name}-<role>"` (`-r2-access-key-id`, `-r2-secret-access-key`,
    `-hf-token` when `worker.hf_token` is set, `-ghcr`) and parented to `parent` only.
    RunPod names are account-unique: each secret is `f"{secret_name_prefix}_<role>"` with
    underscores, the registry credential is `registry_name`. A secret's description reads
    `"<VARIABLE> of <described_as> (managed by Pulumi)"`.
    """
    child = pulumi.ResourceOptions(parent=parent)
    credentials: list[tuple[str, str, pulumi.Input[str]]] = [
        ("R2_ACCESS_KEY_ID", "r2-access-key-id", worker.r2_access_key_id),
        ("R2_SECRET_ACCESS_KEY", "r2-secret-access-key", worker.r2_secret_access_key),
    ]
    if worker.hf_token is not None:
        credentials.append(("HF_TOKEN", "hf-token", worker.hf_token))

    references: dict[str, pulumi.Output[str]] = {}
    names: dict[str, str] = {}
    for variable, role, value in credentials:
        secret_name = f"{secret_name_prefix}_{role.replace('-', '_')}"
        secret = Secret(
            f"{name}-{role}",
            name=secret_name,
            value=value,
            description=f"{variable} of {described_as} (managed by Pulumi)",
            opts=child,
        )
        # The reference reads the secret's output name, so its consumer waits for it.
        references[variable] = secret.name.apply(secret_reference)
        names[variable] = secret_name

    registry = Registry(
        f"{name}-ghcr",
        name=registry_name,
        username=worker.registry_username,
        password=worker.registry_token,
        opts=child,
    )
    return WorkerCredentials(references=references, secret_names=names, registry=registry)


def worker_env(
    worker: WorkerWiring,
    *,
    mode: str,
    model_groups: Sequence[str],
    references: Mapping[str, pulumi.Input[str]],
    mode_env: Mapping[str, pulumi.Input[str]] | None = None,
) -> dict[str, pulumi.Input[str]]:
    """The env every worker shares, with the mode's own entries.

    `MODE`, the R2 target (`R2_ENDPOINT`, `R2_BUCKET`, `R2_PREFIX`), `MODEL_GROUPS`, then
    `mode_env` (e.g. `JOB_TIMEOUT_S`, `ENABLE_R2_SYNC`), the credential `references`, and
    `R2_PUBLIC_BASE_URL` when the bucket has a public URL. `mode_env` may not redefine a
    shared variable.
    """
    env: dict[str, pulumi.Input[str]] = {
        "MODE": mode,
        "R2_ENDPOINT": worker.r2_endpoint,
        "R2_BUCKET": worker.r2_bucket,
        "R2_PREFIX": worker.r2_prefix,
        "MODEL_GROUPS": ",".join(model_groups),
    }
    extra = dict(mode_env or {})
    shared = {*env, *references, "R2_PUBLIC_BASE_URL"}
    if clashes := sorted(shared.intersection(extra)):
        raise ValueError(f"mode_env may not redefine shared worker variables: {clashes}")
    env.update(extra)
    env.update(references)
    if worker.r2_public_base_url is not None:
        env["R2_PUBLIC_BASE_URL"] = worker.r2_public_base_url
    return env
