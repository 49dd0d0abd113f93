"""StackConfig: the one reader of ``pulumi.Config``, typed and validated before any resource.

Owns: the list of configuration keys the program understands (``SCHEMA``, mirrored key for
key by the ``config:`` block of ``Pulumi.yaml``), parsing the raw strings Pulumi hands the
program into frozen, typed sections, and every rule a value must satisfy (RunPod's own
limits come from ``components/runpod/limits.py``). All problems are reported at once, each
naming the key, the bad value and the ``pulumi config set`` command that fixes it. Secrets
become ``pulumi.Output`` values marked secret the moment they are read and are never echoed
in a message.

Each section is the settings of one component (``settings=cfg.serverless``), its fields
named as the keys are, so a new key touches ``Pulumi.yaml``, this module, the component
that uses it and ``docs/configuration.md``: ``__main__.py`` only wires components together.

Deliberately does not create resources or talk to any network: validation runs the same way
under ``pulumi up``, under unit tests and from ``python -m components.config check``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pulumi
import yaml

from components.runpod import limits

PROJECT = "comfyui-runpod"

#: The RunPod provider's API key (the dynamic provider reads it in ``configure``).
RUNPOD_API_KEY = "runpod:apiKey"

#: R2 location hints; empty means "let Cloudflare choose".
R2_LOCATIONS = frozenset({"apac", "eeur", "enam", "weur", "wnam", "oc"})
#: R2 jurisdictions and the host label each adds to the S3 endpoint (Cloudflare's "Data
#: location" page; ``us`` since 2026-08: ``<account>.us.r2.cloudflarestorage.com``). A
#: bucket's jurisdiction is fixed at creation: changing it means a new bucket.
R2_JURISDICTIONS = {"default": "", "eu": ".eu", "fedramp": ".fedramp", "us": ".us"}
PROVIDERS = ("scenario", "comfyui")
PROVIDER_ALIASES = {"runpod": "comfyui"}
PRODUCTION_ENVIRONMENT = "production"
#: ``MODEL_GROUPS`` names the worker image's manifest (``image/models.toml``) defines. Kept
#: here so validation reads no file; a test keeps it equal to the manifest's groups.
KNOWN_MODEL_GROUPS = (
    "wan22_t2v",
    "wan22_t2v_fast",
    "turbodiffusion",
    "steadydancer",
    "flux_dev_fp8",
    "background_removal",
    "upscale",
)
#: Environment variable that, when set, is the GHCR push token instead of
#: ``image.registryToken``: CI passes the workflow's short-lived ``GITHUB_TOKEN`` here.
PUSH_TOKEN_ENV = "GHCR_PUSH_TOKEN"  # noqa: S105 (a variable name, not a token)

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_ACCOUNT_ID = re.compile(r"[0-9a-f]{32}")
_GH_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_IMAGE_PART = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
# Docker allows 128 characters; the build cache lives at "<tag>-buildcache".
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,116}")
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(?::\d{1,5})?")
_ENVIRONMENT = re.compile(r"[A-Za-z0-9._-]{1,255}")
_KV_KEY = re.compile(r"[A-Za-z0-9._:/-]{1,512}")
_TOKEN_LIST = re.compile(r"[A-Za-z0-9_-]+")
_GPU_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]*")

ValueType = Literal["string", "integer", "boolean"]


@dataclass(frozen=True, kw_only=True)
class Key:
    """One declared configuration key (mirrored in ``Pulumi.yaml``)."""

    name: str
    """Key inside the project namespace, e.g. ``rollout.comfyuiPercent``."""
    type: ValueType
    """The type Pulumi validates the stack value against."""
    default: str | int | bool | None = None
    """Value when the stack does not set one; ``None`` means the stack must set it."""
    secret: bool = False
    """Set with ``pulumi config set --secret``; read as a secret Output."""


def _k(name: str, type_: ValueType = "string", default: str | int | bool | None = None) -> Key:
    return Key(name=name, type=type_, default=default)


def _secret(name: str, *, required: bool) -> Key:
    # Pulumi validates a typed secret's default as an unencrypted stack value, so optional
    # secrets carry an empty default (declared untyped in Pulumi.yaml) and required ones none.
    return Key(name=name, type="string", default=None if required else "", secret=True)


SCHEMA: tuple[Key, ...] = (
    _k("cloudflare.accountId"),
    _secret("cloudflare.apiToken", required=True),
    _k("bucket.name", default=""),
    _k("bucket.location", default=""),
    _k("bucket.jurisdiction", default="default"),
    _k("bucket.prefix", default="outputs/"),
    _k("bucket.expireDays", "integer", 0),
    _k("bucket.abortMultipartDays", "integer", 1),
    _k("bucket.corsOrigins", default=""),
    _k("bucket.publicBaseUrl", default=""),
    _k("data.allowDeletion", "boolean", default=False),
    _k("image.owner"),
    _k("image.name", default="comfyui-worker"),
    _k("image.tag", default=""),
    _k("image.digest", default=""),
    _k("image.version", default="0.1.0"),
    _k("image.revision", default=""),
    _k("image.bakeModelGroups", default=""),
    _k("image.sourceUrl", default=""),
    _k("image.registryUsername", default=""),
    _secret("image.registryToken", required=False),
    _k("image.pullUsername", default=""),
    _secret("image.pullToken", required=False),
    _k("runpod.adoptExisting", "boolean", default=False),
    _k("serverless.endpointId", default=""),
    _k("serverless.name", default=""),
    _k("serverless.gpuPools", default="ADA_24,AMPERE_24"),
    _k("serverless.excludedGpuTypes", default=""),
    _k("serverless.gpuCount", "integer", 1),
    _k("serverless.workersMin", "integer", 0),
    _k("serverless.workersMax", "integer", 3),
    _k("serverless.idleTimeout", "integer", 5),
    _k("serverless.scalerType", default="QUEUE_DELAY"),
    _k("serverless.scalerValue", "integer", 4),
    _k("serverless.flashboot", default="FLASHBOOT"),
    _k("serverless.containerDiskGb", "integer", 40),
    _k("serverless.jobTimeoutSeconds", "integer", 600),
    _k("serverless.modelGroups", default="flux_dev_fp8,background_removal"),
    _k("serverless.dataCenterIds", default=""),
    _k("serverless.networkVolumeGb", "integer", 0),
    _k("serverless.networkVolumeDataCenterId", default=""),
    _k("serverless.waitForRollout", "boolean", default=True),
    _k("serverless.rolloutTimeoutSeconds", "integer", 900),
    _k("videoPod.enabled", "boolean", default=False),
    _k("videoPod.dataCenterId", default="EU-RO-1"),
    _k("videoPod.volumeGb", "integer", 200),
    _k("videoPod.containerDiskGb", "integer", 50),
    _k("videoPod.modelGroups", default="wan22_t2v,wan22_t2v_fast"),
    _k("videoPod.jupyter", "boolean", default=True),
    _secret("videoPod.comfyPassword", required=False),
    _secret("models.hfToken", required=False),
    _k("rollout.provider", default="scenario"),
    _k("rollout.comfyuiPercent", "integer", 0),
    _k("rollout.kvKey", default="image-generation"),
    _k("app.repository"),
    _k("app.environment", default=""),
    _k("app.reviewerUserIds", default=""),
    _k("app.reviewerTeamIds", default=""),
    _secret("app.githubToken", required=True),
    _secret("app.runpodApiKey", required=False),
    _secret("app.scenarioApiKey", required=False),
    _secret("app.scenarioSecretApiKey", required=False),
)
SCHEMA_BY_NAME = {key.name: key for key in SCHEMA}


class ConfigError(ValueError):
    """The stack configuration is invalid; the message lists every problem and its fix."""

    def __init__(self, stack: str, problems: list[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"stack {stack!r} has invalid configuration:\n{lines}")


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True, kw_only=True)
class CloudflareSettings:
    """The Cloudflare account everything lives in and the token that manages it."""

    account_id: str
    """32-hex account id."""
    api_token: pulumi.Output[str]
    """API token for the Cloudflare provider (secret)."""


@dataclass(frozen=True, kw_only=True)
class BucketSettings:
    """The R2 bucket that receives every generated file."""

    name: str
    """Bucket name (derived from project and stack unless set)."""
    location: str | None
    """Location hint (``weur``...), ``None`` to let Cloudflare choose."""
    jurisdiction: str
    """``default``, ``eu``, ``fedramp`` or ``us``; decides the S3 endpoint host. Fixed at
    creation: a change plans a replacement, which protection refuses."""
    prefix: str
    """Key prefix of generated objects (``R2_PREFIX``); empty or ending in ``/``."""
    expire_days: int
    """Delete generated objects after this many days; 0 keeps them."""
    abort_multipart_days: int
    """Abort multipart uploads left incomplete for this many days."""
    cors_origins: tuple[str, ...]
    """Browser origins of the app allowed to GET/HEAD objects."""
    public_base_url: str | None
    """Public URL (custom domain or r2.dev) objects are served from, if any."""
    allow_deletion: bool
    """``data.allowDeletion``: unless true, the bucket is registered protected."""


@dataclass(frozen=True, kw_only=True)
class DataSettings:
    """Whether the stack may delete or replace what holds data: the bucket and the volumes."""

    allow_deletion: bool
    """``False`` (the default) registers the R2 bucket and both network volumes with
    ``protect=True``: Pulumi refuses any plan that deletes or replaces them."""


@dataclass(frozen=True, kw_only=True)
class ImageSettings:
    """The worker image on GHCR: built from ``image/`` or pinned to a digest."""

    registry: str
    """Registry host, always ``ghcr.io``."""
    owner: str
    """GHCR namespace (user or organisation), lower case."""
    name: str
    """Package name, lower case."""
    tag: str
    """Tag pushed by a build; its registry build cache is ``<tag>-buildcache``."""
    digest: str | None
    """Pinned ``sha256:<64 hex>``; when set nothing is built."""
    version: str
    """``org.opencontainers.image.version``."""
    revision: str | None
    """``org.opencontainers.image.revision``; ``None`` lets the build use the content hash
    of its context, so a commit that changes nothing under ``image/`` rebuilds nothing."""
    bake_model_groups: tuple[str, ...]
    """Model groups baked into the image (``BAKE_MODEL_GROUPS``); empty bakes none."""
    source_url: str
    """``org.opencontainers.image.source``: links the package to its repository."""
    registry_username: str
    """User that pushes to GHCR."""
    registry_token: pulumi.Output[str] | None
    """Push token with ``write:packages`` (secret): ``$GHCR_PUSH_TOKEN`` when set (CI: the
    workflow's ``GITHUB_TOKEN``), else ``image.registryToken``; required only when
    building, never given to RunPod."""
    pull_username: str
    """User owning the pull token (RunPod's registry credential)."""
    pull_token: pulumi.Output[str] | None
    """Read-only token with ``read:packages`` (secret) that RunPod pulls the image with;
    required when the stack manages an endpoint or the video pod."""

    @property
    def repository(self) -> str:
        """``ghcr.io/<owner>/<name>``, without tag or digest."""
        return f"{self.registry}/{self.owner}/{self.name}"


@dataclass(frozen=True, kw_only=True)
class ServerlessSettings:
    """The RunPod serverless ComfyUI endpoint: the settings `ComfyServerless` is built from."""

    endpoint_id: str | None
    """Use this existing endpoint instead of managing one (the seam until it is managed)."""
    name: str
    """Endpoint name."""
    gpu_pools: tuple[str, ...]
    """GPU pools workers may run on (a set: RunPod keeps no order of preference)."""
    excluded_gpu_types: tuple[str, ...]
    """GPU types (RunPod type ids such as ``NVIDIA L4``) taken out of those pools; empty
    uses the whole pools. A set, like the pools."""
    gpu_count: int
    """GPUs per worker."""
    workers_min: int
    """Always-on workers (``minWorkers: 1`` removes cold starts)."""
    workers_max: int
    """Upper bound of workers."""
    idle_timeout: int
    """Seconds an idle worker stays up, 1..3600."""
    scaler_type: str
    """``QUEUE_DELAY`` or ``REQUEST_COUNT``."""
    scaler_value: int
    """Queue delay seconds or requests per worker."""
    flashboot: str
    """``OFF``, ``FLASHBOOT`` or ``PRIORITY_FLASHBOOT``."""
    container_disk_gb: int
    """Container disk per worker."""
    job_timeout_seconds: int
    """Execution timeout of one job (``JOB_TIMEOUT_S``)."""
    model_groups: tuple[str, ...]
    """``MODEL_GROUPS`` for the serverless workers (groups of ``image/models.toml``)."""
    data_center_ids: tuple[str, ...]
    """Restrict workers to these data centers; empty means anywhere."""
    network_volume_gb: int | None
    """Size of a network volume for models, 10..4096 GB; ``None`` for no volume."""
    network_volume_data_center_id: str | None
    """Data center of that volume (set exactly when a size is)."""
    wait_for_rollout: bool
    """Whether ``pulumi up`` waits until a new release runs on every worker."""
    rollout_timeout_seconds: int
    """How long that wait may take before ``pulumi up`` fails."""
    adopt_existing: bool
    """Take over same-named RunPod objects that predate the stack (``runpod.adoptExisting``)."""
    allow_deletion: bool
    """``data.allowDeletion``: unless true, the models volume is registered protected."""


@dataclass(frozen=True, kw_only=True)
class VideoPodSettings:
    """The WAN 2.2 video pod's network volume and template: the settings `VideoPod` is built
    from."""

    enabled: bool
    """Whether the stack declares the video pod at all."""
    data_center_id: str
    """Data center of the network volume (immutable)."""
    volume_gb: int
    """Network volume size, 10..4096 GB (grow only)."""
    container_disk_gb: int
    """Container disk of the pod."""
    model_groups: tuple[str, ...]
    """``MODEL_GROUPS`` for the pod (groups of ``image/models.toml``)."""
    jupyter: bool
    """Whether the pod template starts JupyterLab on 8888."""
    adopt_existing: bool
    """Take over same-named RunPod objects that predate the stack (``runpod.adoptExisting``)."""
    comfy_password: pulumi.Output[str] | None
    """Password of the proxy in front of ComfyUI on 8188 (secret); required when enabled."""
    allow_deletion: bool
    """``data.allowDeletion``: unless true, the network volume is registered protected."""


@dataclass(frozen=True, kw_only=True)
class ModelSettings:
    """Credentials for model downloads."""

    hf_token: pulumi.Output[str] | None
    """Hugging Face token for gated models (secret), if configured."""


@dataclass(frozen=True, kw_only=True)
class RolloutSettings:
    """The runtime flag the app reads per request to choose its provider."""

    provider: Literal["scenario", "comfyui"]
    """``scenario`` sends everything to Scenario (the rollback, seen within about 60 s)."""
    comfyui_percent: int
    """Share of requests sent to ComfyUI while ``provider`` is ``comfyui``."""
    kv_key: str
    """Workers KV key holding the flag."""


@dataclass(frozen=True, kw_only=True)
class AppSettings:
    """The app's GitHub repository and the environment this stack fills."""

    repository_owner: str
    """GitHub owner of the app repository."""
    repository_name: str
    """GitHub repository name."""
    environment: str
    """Deployment environment name (``staging``, ``production``)."""
    reviewer_user_ids: tuple[int, ...]
    """Numeric GitHub user ids that must approve deployments."""
    reviewer_team_ids: tuple[int, ...]
    """Numeric GitHub team ids that must approve deployments."""
    github_token: pulumi.Output[str]
    """Token allowed to manage the repository's environments, secrets and variables."""
    runpod_api_key: pulumi.Output[str] | None
    """Key the app calls RunPod with (``app.runpodApiKey``, else ``runpod:apiKey``)."""
    scenario_api_key: pulumi.Output[str] | None
    """Scenario key, kept as the emergency fallback."""
    scenario_secret_api_key: pulumi.Output[str] | None
    """Scenario secret, kept as the emergency fallback."""


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    """Everything the program needs, validated."""

    project: str
    stack: str
    cloudflare: CloudflareSettings
    bucket: BucketSettings
    data: DataSettings
    image: ImageSettings
    serverless: ServerlessSettings
    video_pod: VideoPodSettings
    models: ModelSettings
    rollout: RolloutSettings
    app: AppSettings

    @property
    def is_production(self) -> bool:
        """Whether this stack serves the app's production environment."""
        return self.app.environment == PRODUCTION_ENVIRONMENT


# --------------------------------------------------------------------------- parsing


class _Reader:
    """Reads raw config strings, recording each problem with the command that fixes it."""

    def __init__(self, values: Mapping[str, str], stack: str) -> None:
        unknown = sorted(set(values) - set(SCHEMA_BY_NAME) - {RUNPOD_API_KEY})
        self.values = values
        self.stack = stack
        self.missing: set[str] = set()
        self.problems: list[str] = [
            f"{name} is not a key this program reads (typo?): "
            f"pulumi config rm {name} --stack {stack}"
            for name in unknown
        ]

    def fix(self, name: str, hint: str) -> str:
        secret = " --secret" if name == RUNPOD_API_KEY or SCHEMA_BY_NAME[name].secret else ""
        return f"pulumi config set{secret} {name} {hint} --stack {self.stack}"

    def problem(self, name: str, what: str, hint: str) -> None:
        self.problems.append(f"{name} {what}: {self.fix(name, hint)}")

    def raw(self, name: str) -> str:
        key = SCHEMA_BY_NAME[name]
        value = self.values.get(name)
        if value is not None:
            return value.strip()
        if key.default is None:
            self.missing.add(name)
            self.problem(name, "is not set", f"<{name.rsplit('.', 1)[-1]}>")
            return ""
        return str(key.default).lower() if isinstance(key.default, bool) else str(key.default)

    def string(self, name: str, pattern: re.Pattern[str], hint: str, *, empty: bool) -> str:
        value = self.raw(name)
        if name in self.missing or (empty and not value):
            return value
        if not pattern.fullmatch(value):
            self.problem(name, f"must be {hint}, got {value!r}", f"<{hint}>")
        return value

    def choice(self, name: str, choices: tuple[str, ...] | frozenset[str]) -> str:
        value = self.raw(name)
        if value not in choices:
            allowed = "|".join(sorted(choices))
            self.problem(name, f"must be one of {allowed}, got {value!r}", f"<{allowed}>")
        return value

    def integer(self, name: str, low: int, high: int) -> int:
        text = self.raw(name)
        try:
            value = int(text)
        except ValueError:
            self.problem(
                name, f"must be an integer {low}..{high}, got {text!r}", f"<{low}..{high}>"
            )
            return low
        if not low <= value <= high:
            self.problem(name, f"must be {low}..{high}, got {value}", f"<{low}..{high}>")
        return value

    def boolean(self, name: str) -> bool:
        text = self.raw(name).lower()
        if text not in ("true", "false"):
            self.problem(name, f"must be true or false, got {text!r}", "<true|false>")
        return text == "true"

    def words(self, name: str, pattern: re.Pattern[str], hint: str) -> tuple[str, ...]:
        items = tuple(item.strip() for item in self.raw(name).split(",") if item.strip())
        bad = [item for item in items if not pattern.fullmatch(item)]
        if bad:
            self.problem(name, f"has invalid entries {bad} (want {hint})", f"<{hint},...>")
        return items

    def groups(self, name: str, *, allow_empty: bool = False) -> tuple[str, ...]:
        """A comma list of model groups, each one the manifest defines (at least one unless
        ``allow_empty``)."""
        groups = self.words(name, _TOKEN_LIST, "group")
        unknown = [group for group in groups if group not in KNOWN_MODEL_GROUPS]
        default = str(SCHEMA_BY_NAME[name].default) or "flux_dev_fp8,background_removal"
        if unknown:
            self.problem(
                name,
                f"names unknown model groups {unknown} "
                f"(image/models.toml defines {', '.join(KNOWN_MODEL_GROUPS)})",
                default,
            )
        elif not groups and not allow_empty:
            self.problem(name, "must name at least one model group", default)
        return groups

    def ids(self, name: str) -> tuple[int, ...]:
        items = self.words(name, re.compile(r"\d+"), "numeric id")
        return tuple(int(item) for item in items if item.isdigit())

    def secret(self, name: str) -> pulumi.Output[str] | None:
        value = self.values.get(name, "")
        if not value:
            if name in SCHEMA_BY_NAME and SCHEMA_BY_NAME[name].default is None:
                self.missing.add(name)
                self.problem(name, "is not set", "<value>")
            return None
        return pulumi.Output.secret(value)


def parse(
    values: Mapping[str, str],
    *,
    stack: str,
    project: str = PROJECT,
    env: Mapping[str, str] | None = None,
) -> StackConfig:
    """Build a :class:`StackConfig` from raw config strings keyed by name within the project.

    ``values`` maps ``bucket.name``-style keys (plus ``runpod:apiKey``) to the strings Pulumi
    passes a program; missing keys take the ``SCHEMA`` default. ``env`` (default
    ``os.environ``) is consulted for ``GHCR_PUSH_TOKEN`` only. Raises :class:`ConfigError`
    listing every problem.
    """
    r = _Reader(values, stack)
    cloudflare = _cloudflare(r)
    data = DataSettings(allow_deletion=r.boolean("data.allowDeletion"))
    bucket = _bucket(r, project=project, stack=stack, data=data)
    image = _image(r, stack=stack, env=os.environ if env is None else env)
    serverless = _serverless(r, project=project, stack=stack, data=data)
    video_pod = _video_pod(r, data=data)
    rollout = _rollout(r)
    runpod_api_key = r.secret(RUNPOD_API_KEY)
    app = _app(r, stack=stack, runpod_api_key=runpod_api_key)
    _cross_checks(
        r, image=image, serverless=serverless, video_pod=video_pod, rollout=rollout, app=app
    )
    if r.problems:
        raise ConfigError(stack, r.problems)
    return StackConfig(
        project=project,
        stack=stack,
        cloudflare=cloudflare,
        bucket=bucket,
        data=data,
        image=image,
        serverless=serverless,
        video_pod=video_pod,
        models=ModelSettings(hf_token=r.secret("models.hfToken")),
        rollout=rollout,
        app=app,
    )


def _cloudflare(r: _Reader) -> CloudflareSettings:
    account_id = r.string("cloudflare.accountId", _ACCOUNT_ID, "32 hex characters", empty=False)
    token = r.secret("cloudflare.apiToken")
    return CloudflareSettings(account_id=account_id, api_token=token or _missing())


def _bucket(r: _Reader, *, project: str, stack: str, data: DataSettings) -> BucketSettings:
    hint = "3-63 of a-z 0-9 -, starting and ending with a letter or digit"
    name = r.string("bucket.name", _BUCKET, hint, empty=True) or f"{project}-{stack}"
    if not _BUCKET.fullmatch(name):
        r.problem("bucket.name", f"derived name {name!r} breaks R2 rules ({hint})", "<name>")
    location = r.raw("bucket.location").lower()
    if location and location not in R2_LOCATIONS:
        allowed = "|".join(sorted(R2_LOCATIONS))
        r.problem("bucket.location", f"must be empty or {allowed}, got {location!r}", allowed)
    prefix = r.raw("bucket.prefix")
    if prefix and (not prefix.endswith("/") or prefix.startswith("/") or "//" in prefix):
        r.problem("bucket.prefix", f"must be empty or end in '/', got {prefix!r}", "outputs/")
    public = r.raw("bucket.publicBaseUrl").rstrip("/")
    if public and not re.fullmatch(r"https://[A-Za-z0-9.-]+(/[\w./-]*)?", public):
        r.problem("bucket.publicBaseUrl", f"must be an https:// URL, got {public!r}", "<url>")
    return BucketSettings(
        name=name,
        location=location or None,
        jurisdiction=r.choice("bucket.jurisdiction", tuple(R2_JURISDICTIONS)),
        prefix=prefix,
        expire_days=r.integer("bucket.expireDays", 0, 3650),
        abort_multipart_days=r.integer("bucket.abortMultipartDays", 1, 365),
        cors_origins=r.words("bucket.corsOrigins", _ORIGIN, "https://host[:port]"),
        public_base_url=public or None,
        allow_deletion=data.allow_deletion,
    )


def _image(r: _Reader, *, stack: str, env: Mapping[str, str]) -> ImageSettings:
    owner = r.string("image.owner", _IMAGE_PART, "a lower-case GHCR owner", empty=False)
    name = r.string("image.name", _IMAGE_PART, "a lower-case package name", empty=False)
    digest = r.raw("image.digest")
    if digest and not _DIGEST.fullmatch(digest):
        r.problem("image.digest", f"must be sha256:<64 hex>, got {digest!r}", "sha256:<64 hex>")
    tag = r.string("image.tag", _TAG, "a docker tag", empty=True) or stack
    source = r.raw("image.sourceUrl") or f"https://github.com/{owner}/{PROJECT}"
    bake = r.groups("image.bakeModelGroups", allow_empty=True)
    if bake and digest:
        r.problems.append(
            f"image.bakeModelGroups ({','.join(bake)}) has no effect: image.digest pins an "
            "image, so this stack builds nothing; bake in the stack that builds: "
            f"pulumi config rm image.bakeModelGroups --stack {r.stack}"
        )
    # The CI token wins: the workflow hands over a token that expires with the job.
    push_token = env.get(PUSH_TOKEN_ENV, "").strip()
    return ImageSettings(
        registry="ghcr.io",
        owner=owner,
        name=name,
        tag=tag,
        digest=digest or None,
        version=r.raw("image.version"),
        revision=r.raw("image.revision") or None,
        bake_model_groups=bake,
        source_url=source,
        registry_username=r.raw("image.registryUsername") or owner,
        registry_token=(
            pulumi.Output.secret(push_token) if push_token else r.secret("image.registryToken")
        ),
        pull_username=r.raw("image.pullUsername") or r.raw("image.registryUsername") or owner,
        pull_token=r.secret("image.pullToken"),
    )


def _serverless(r: _Reader, *, project: str, stack: str, data: DataSettings) -> ServerlessSettings:
    pools = r.words("serverless.gpuPools", _TOKEN_LIST, "pool")
    unknown = [pool for pool in pools if pool not in limits.GPU_POOLS]
    known = ",".join(sorted(limits.GPU_POOLS))
    if unknown or not pools:
        r.problem(
            "serverless.gpuPools",
            f"must list known GPU pools ({known}), got {unknown or '[]'}",
            "ADA_24,AMPERE_24",
        )
    workers_min = r.integer("serverless.workersMin", 0, 100)
    workers_max = r.integer("serverless.workersMax", 0, 100)
    if workers_min > workers_max:
        r.problem(
            "serverless.workersMin",
            f"({workers_min}) must not exceed serverless.workersMax ({workers_max})",
            f"{workers_max}",
        )
    data_center_ids = r.words("serverless.dataCenterIds", _TOKEN_LIST, "data center id")
    volume_gb, volume_dc = _serverless_volume(r, data_center_ids)
    return ServerlessSettings(
        endpoint_id=r.string("serverless.endpointId", _TOKEN_LIST, "an endpoint id", empty=True)
        or None,
        name=r.raw("serverless.name") or f"{project}-{stack}-comfyui",
        gpu_pools=pools,
        excluded_gpu_types=_excluded_gpu_types(r),
        gpu_count=r.integer("serverless.gpuCount", *limits.GPU_COUNT),
        workers_min=workers_min,
        workers_max=workers_max,
        idle_timeout=r.integer("serverless.idleTimeout", *limits.IDLE_TIMEOUT_S),
        scaler_type=r.choice("serverless.scalerType", limits.SCALER_TYPES),
        scaler_value=r.integer("serverless.scalerValue", 1, 1000),
        flashboot=r.choice("serverless.flashboot", limits.FLASHBOOT_MODES),
        container_disk_gb=r.integer("serverless.containerDiskGb", 10, 1000),
        job_timeout_seconds=r.integer("serverless.jobTimeoutSeconds", 10, 86400),
        model_groups=r.groups("serverless.modelGroups"),
        data_center_ids=data_center_ids,
        network_volume_gb=volume_gb,
        network_volume_data_center_id=volume_dc,
        wait_for_rollout=r.boolean("serverless.waitForRollout"),
        rollout_timeout_seconds=r.integer("serverless.rolloutTimeoutSeconds", 60, 7200),
        adopt_existing=r.boolean("runpod.adoptExisting"),
        allow_deletion=data.allow_deletion,
    )


def _excluded_gpu_types(r: _Reader) -> tuple[str, ...]:
    """GPU type ids taken out of the pools, each named once (RunPod refuses repeats)."""
    name = "serverless.excludedGpuTypes"
    types = tuple(item.strip() for item in r.raw(name).split(",") if item.strip())
    bad = [gpu_type for gpu_type in types if not _GPU_TYPE.fullmatch(gpu_type)]
    repeated = sorted({gpu_type for gpu_type in types if types.count(gpu_type) > 1})
    if bad or repeated:
        what = f"has invalid entries {bad}" if bad else f"names {repeated} more than once"
        r.problem(
            name,
            f"{what} (want RunPod GPU type ids such as 'NVIDIA L4', each once)",
            "'NVIDIA L4,NVIDIA RTX A4000'",
        )
    return types


def _serverless_volume(
    r: _Reader, data_center_ids: tuple[str, ...]
) -> tuple[int | None, str | None]:
    """The optional models volume: a size (0 = none) and the data center it lives in."""
    size_key, dc_key = "serverless.networkVolumeGb", "serverless.networkVolumeDataCenterId"
    low, high = limits.VOLUME_GB
    text = r.raw(size_key)
    try:
        size = int(text)
    except ValueError:
        size = -1
    if size != 0 and not low <= size <= high:
        r.problem(
            size_key,
            f"must be 0 (no volume) or {low}..{high} GB, got {text!r}",
            f"<0|{low}..{high}>",
        )
        return None, None
    data_center = r.string(dc_key, _TOKEN_LIST, "a data center id", empty=True)
    if size == 0:
        if data_center:
            r.problems.append(
                f"{dc_key} is {data_center!r} but {size_key} is 0, so no volume is created: "
                f"{r.fix(size_key, f'<{low}..{high}>')} "
                f"(or pulumi config rm {dc_key} --stack {r.stack})"
            )
        return None, None
    if not data_center:
        r.problem(
            dc_key,
            f"is required when {size_key} is {size} (a network volume lives in one data center)",
            "<data center id, e.g. EU-RO-1>",
        )
        return None, None
    if data_center_ids and data_center not in data_center_ids:
        r.problem(
            "serverless.dataCenterIds",
            f"{list(data_center_ids)} must include {dc_key} ({data_center}): "
            "workers can only mount the volume in its data center",
            data_center,
        )
    return size, data_center


def _video_pod(r: _Reader, *, data: DataSettings) -> VideoPodSettings:
    enabled = r.boolean("videoPod.enabled")
    return VideoPodSettings(
        enabled=enabled,
        data_center_id=r.string(
            "videoPod.dataCenterId", _TOKEN_LIST, "a data center id", empty=False
        ),
        volume_gb=r.integer("videoPod.volumeGb", *limits.VOLUME_GB),
        container_disk_gb=r.integer("videoPod.containerDiskGb", 10, 1000),
        model_groups=r.groups("videoPod.modelGroups"),
        jupyter=r.boolean("videoPod.jupyter"),
        adopt_existing=r.boolean("runpod.adoptExisting"),
        comfy_password=_comfy_password(r, enabled=enabled),
        allow_deletion=data.allow_deletion,
    )


#: Shortest ComfyUI proxy password: a leaked pod URL is public, the password is the lock.
MIN_COMFY_PASSWORD = 12


def _comfy_password(r: _Reader, *, enabled: bool) -> pulumi.Output[str] | None:
    name = "videoPod.comfyPassword"
    raw = r.values.get(name, "")
    if not enabled:
        return r.secret(name)
    if len(raw) < MIN_COMFY_PASSWORD:
        what = "is not set" if not raw else f"must have at least {MIN_COMFY_PASSWORD} characters"
        r.problem(
            name,
            f"{what} (required when videoPod.enabled is true: ComfyUI on the pod's public URL "
            "answers only with it)",
            "<password>",
        )
        return None
    return r.secret(name)


def _rollout(r: _Reader) -> RolloutSettings:
    raw = r.raw("rollout.provider").lower()
    provider = PROVIDER_ALIASES.get(raw, raw)
    if provider not in PROVIDERS:
        r.problem(
            "rollout.provider",
            f"must be scenario, comfyui or runpod (an alias of comfyui), got {raw!r}",
            "<scenario|comfyui>",
        )
        provider = "scenario"
    return RolloutSettings(
        provider="comfyui" if provider == "comfyui" else "scenario",
        comfyui_percent=r.integer("rollout.comfyuiPercent", 0, 100),
        kv_key=r.string("rollout.kvKey", _KV_KEY, "a KV key name", empty=False),
    )


def _app(r: _Reader, *, stack: str, runpod_api_key: pulumi.Output[str] | None) -> AppSettings:
    repository = r.raw("app.repository")
    owner, _, name = repository.partition("/")
    if "app.repository" not in r.missing and not (
        _GH_NAME.fullmatch(owner) and _GH_NAME.fullmatch(name)
    ):
        r.problem("app.repository", f"must be <owner>/<name>, got {repository!r}", "<owner>/<name>")
    environment = r.raw("app.environment") or (
        PRODUCTION_ENVIRONMENT if stack in ("prod", "production") else stack
    )
    if not _ENVIRONMENT.fullmatch(environment):
        r.problem(
            "app.environment", f"must be a GitHub environment name, got {environment!r}", "<name>"
        )
    return AppSettings(
        repository_owner=owner,
        repository_name=name,
        environment=environment,
        reviewer_user_ids=r.ids("app.reviewerUserIds"),
        reviewer_team_ids=r.ids("app.reviewerTeamIds"),
        github_token=r.secret("app.githubToken") or _missing(),
        runpod_api_key=r.secret("app.runpodApiKey") or runpod_api_key,
        scenario_api_key=r.secret("app.scenarioApiKey"),
        scenario_secret_api_key=r.secret("app.scenarioSecretApiKey"),
    )


def _cross_checks(
    r: _Reader,
    *,
    image: ImageSettings,
    serverless: ServerlessSettings,
    video_pod: VideoPodSettings,
    rollout: RolloutSettings,
    app: AppSettings,
) -> None:
    _registry_checks(r, image=image, serverless=serverless, video_pod=video_pod)
    sends_comfyui = rollout.provider == "comfyui" and rollout.comfyui_percent > 0
    if sends_comfyui and app.runpod_api_key is None:
        r.problems.append(
            "the app sends traffic to ComfyUI but has no RunPod key: "
            f"{r.fix('app.runpodApiKey', '<key>')} (or {r.fix(RUNPOD_API_KEY, '<key>')})"
        )
    if sends_comfyui and app.environment == PRODUCTION_ENVIRONMENT:
        # The rollout plan keeps Scenario as the emergency fallback in production.
        missing = [
            name
            for name, value in (
                ("app.scenarioApiKey", app.scenario_api_key),
                ("app.scenarioSecretApiKey", app.scenario_secret_api_key),
            )
            if value is None
        ]
        r.problems.extend(
            f"{name} is not set, but production sends traffic to ComfyUI and Scenario must stay "
            f"configured as the rollback: {r.fix(name, '<value>')}"
            for name in missing
        )


def _registry_checks(
    r: _Reader, *, image: ImageSettings, serverless: ServerlessSettings, video_pod: VideoPodSettings
) -> None:
    """Least privilege on GHCR: the push token builds, a read-only token is all RunPod gets."""
    if image.registry_token is None and image.digest is None:
        r.problems.append(
            "image.registryToken (the push token) is not set, and the stack builds and pushes "
            f"the image (no image.digest pinned); in CI set {PUSH_TOKEN_ENV} to the workflow's "
            "GITHUB_TOKEN (packages: write), on a laptop: "
            f"{r.fix('image.registryToken', '<GitHub classic token with write:packages>')}"
        )
    pullers = [
        what
        for what, pulls in (
            ("the serverless endpoint", serverless.endpoint_id is None),
            ("the video pod", video_pod.enabled),
        )
        if pulls
    ]
    if image.pull_token is None and pullers:
        r.problems.append(
            f"image.pullToken (RunPod's read-only pull token) is not set, and RunPod pulls the "
            f"image for {' and '.join(pullers)}: "
            f"{r.fix('image.pullToken', '<GitHub classic token with read:packages only>')}"
        )
    push, pull = r.values.get("image.registryToken"), r.values.get("image.pullToken")
    if push and pull and push.strip() == pull.strip():
        r.problems.append(
            "image.pullToken is the same token as image.registryToken, so RunPod would hold a "
            "token that can push; create a separate token with read:packages only: "
            f"{r.fix('image.pullToken', '<GitHub classic token with read:packages only>')}"
        )


def _missing() -> pulumi.Output[str]:
    # Only reached when a problem was recorded, so parse() raises before this is used.
    return pulumi.Output.secret("")


# --------------------------------------------------------------------------- sources


def load() -> StackConfig:
    """Read the running stack's configuration (the program's only ``pulumi.Config`` use)."""
    project = pulumi.get_project()
    config = pulumi.Config(project)
    values = {key.name: v for key in SCHEMA if (v := config.get(key.name)) is not None}
    if (runpod_key := pulumi.Config("runpod").get("apiKey")) is not None:
        values[RUNPOD_API_KEY] = runpod_key
    return validate(values, stack=pulumi.get_stack(), project=project, root=Path.cwd())


def stack_file_values(root: Path, stack: str) -> tuple[dict[str, str], set[str]]:
    """Values of ``Pulumi.<stack>.yaml`` as Pulumi would pass them, and the secure keys.

    Secure values cannot be decrypted offline, so they appear as a placeholder string (one
    per key, so no two secrets look equal); the second element names them. Defaults from
    ``Pulumi.yaml`` are left to :func:`parse`.
    """
    document = yaml.safe_load((root / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8")) or {}
    values: dict[str, str] = {}
    secure: set[str] = set()
    for full_key, value in (document.get("config") or {}).items():
        namespace, _, name = str(full_key).partition(":")
        key = name if namespace == PROJECT else str(full_key)
        if isinstance(value, dict) and "secure" in value:
            secure.add(key)
            # Distinct per key: ciphertext cannot be compared offline (see _registry_checks).
            values[key] = f"<secure {key}>"
        elif isinstance(value, bool):
            values[key] = str(value).lower()
        elif isinstance(value, (list, dict)):
            values[key] = json.dumps(value)
        else:
            values[key] = str(value)
    return values, secure


# --------------------------------------------------------------------------- example values

#: Set (to anything) by the test suite so tests and Pulumi mocks may use the example values the
#: committed stack files ship with; a real deploy and the offline check refuse them.
ALLOW_EXAMPLE_VALUES_ENV = "COMFYUI_RUNPOD_ALLOW_EXAMPLE_VALUES"
#: Example values of Pulumi.staging.yaml / Pulumi.prod.yaml, and what belongs in their place.
EXAMPLE_VALUES: dict[str, tuple[str, str]] = {
    "cloudflare.accountId": (
        "0123456789abcdef0123456789abcdef",
        "your Cloudflare account id (32 hex characters, in the dashboard's URL)",
    ),
    "image.owner": ("acme-games", "your GHCR owner (GitHub user or organisation, lower case)"),
    "image.registryUsername": ("acme-games", "the GitHub user that pushes the image"),
    "image.pullUsername": ("acme-games", "the GitHub user that owns the read-only pull token"),
    "image.digest": (
        "sha256:5f0c2d5a3c1e9b7d4a6f8e0b2c4d6e8f0a1b3c5d7e9f1a3b5c7d9e1f3a5b7c9d",
        "the digest staging built and tested (pulumi stack output imageDigest --stack staging)",
    ),
}
#: ``app.repository`` owners that only exist in the examples.
EXAMPLE_OWNERS = frozenset({"acme-games"})
#: Reserved example domains (RFC 2606) anywhere in a URL, origin or host.
_EXAMPLE_DOMAIN = re.compile(r"(?:^|[/.@,\s])example\.(?:com|net|org)(?=$|[:/,\s])", re.IGNORECASE)
_STACK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def example_value_problems(
    values: Mapping[str, str], *, stack: str, stack_file: Path | None = None
) -> list[str]:
    """Each example value still in ``values``, with the line of ``stack_file`` to change."""
    found: list[tuple[str, str, str]] = []
    for key, (example, wanted) in EXAMPLE_VALUES.items():
        if values.get(key, "").strip() == example:
            found.append((key, example, wanted))
    repository = values.get("app.repository", "").strip()
    if repository.partition("/")[0] in EXAMPLE_OWNERS:
        found.append(("app.repository", repository, "your app's GitHub repository <owner>/<name>"))
    for key in sorted(values):
        value = values[key]
        if (
            key in SCHEMA_BY_NAME
            and not SCHEMA_BY_NAME[key].secret
            and _EXAMPLE_DOMAIN.search(value)
        ):
            found.append((key, value, "your own domains (example.com is a placeholder)"))
    lines = _stack_file_lines(stack_file)
    problems = []
    for key, value, wanted in found:
        fix = f"pulumi config set {key} <value> --stack {stack}"
        where = f"change {stack_file.name} line {lines[key]}" if stack_file and key in lines else ""
        how = f"{where} to {wanted}, or {fix}" if where else f"set {wanted}: {fix}"
        problems.append(f"{key} is still the shipped example {value!r}: {how}")
    return problems


def _stack_file_lines(stack_file: Path | None) -> dict[str, int]:
    """Line number of each key set in a stack file (1-based), for messages."""
    if stack_file is None or not stack_file.is_file():
        return {}
    lines: dict[str, int] = {}
    pattern = re.compile(rf"^\s*(?:{re.escape(PROJECT)}:)?([A-Za-z][\w.:]*)\s*:")
    for number, line in enumerate(stack_file.read_text(encoding="utf-8").splitlines(), 1):
        if match := pattern.match(line):
            lines.setdefault(match.group(1), number)
    return lines


def validate(
    values: Mapping[str, str],
    *,
    stack: str,
    project: str = PROJECT,
    root: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> StackConfig:
    """:func:`parse`, and refuse the shipped example values unless the test suite allows them.

    ``root`` is the folder holding ``Pulumi.<stack>.yaml``, for the line numbers in messages;
    ``env`` is passed on to :func:`parse` (a CI job's environment, for ``GHCR_PUSH_TOKEN``).
    """
    examples = []
    if not os.environ.get(ALLOW_EXAMPLE_VALUES_ENV):
        stack_file = root / f"Pulumi.{stack}.yaml" if root is not None else None
        examples = example_value_problems(values, stack=stack, stack_file=stack_file)
    try:
        config = parse(values, stack=stack, project=project, env=env)
    except ConfigError as error:
        raise ConfigError(stack, [*examples, *error.problems]) from None
    if examples:
        raise ConfigError(stack, examples)
    return config


# --------------------------------------------------------------------------- offline check


def project_root(start: Path | None = None) -> Path:
    """The folder of this project's ``Pulumi.yaml`` at or above ``start`` (as the Pulumi CLI
    looks for it), else the checkout this module lives in: the check works from any folder."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        project_file = folder / "Pulumi.yaml"
        if project_file.is_file():
            document = yaml.safe_load(project_file.read_text(encoding="utf-8")) or {}
            if isinstance(document, dict) and document.get("name") == PROJECT:
                return folder
    return Path(__file__).resolve().parents[1]


def _problems(values: Mapping[str, str], *, stack: str, root: Path) -> list[str]:
    try:
        validate(values, stack=stack, root=root)
    except ConfigError as error:
        return list(error.problems)
    return []


def _main(argv: list[str]) -> int:
    """``python -m components.config check --stack <stack>``: validate a stack file offline.

    ``--secrets-later`` (what ``scripts/up`` runs before the stack exists) lets secrets that
    are not set yet pass, and lists the ``pulumi config set --secret`` commands still to run.
    Exit codes: 0 valid, 1 invalid or no stack file, 2 usage.
    """
    import argparse  # noqa: PLC0415 - only the command line needs it

    parser = argparse.ArgumentParser(prog="python -m components.config")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate Pulumi.<stack>.yaml offline")
    check.add_argument("--stack", required=True)
    check.add_argument("--secrets-later", action="store_true", help="pass missing secrets")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    stack: str = args.stack
    if not _STACK_NAME.fullmatch(stack):
        sys.stderr.write(f"{stack!r} is not a stack name (letters, digits, '.', '_', '-')\n")
        return 2
    root = project_root()
    if not (root / f"Pulumi.{stack}.yaml").is_file():
        sys.stderr.write(
            f"no Pulumi.{stack}.yaml in {root}: copy Pulumi.staging.yaml and edit it "
            f"(cp Pulumi.staging.yaml Pulumi.{stack}.yaml), then run this again\n"
        )
        return 1
    values, _ = stack_file_values(root, stack)
    problems = _problems(values, stack=stack, root=root)
    todo: list[str] = []
    if args.secrets_later:
        missing = [k.name for k in SCHEMA if k.secret and k.name not in values]
        later = {**{name: f"<secret {name}, set later>" for name in missing}, **values}
        later.setdefault(RUNPOD_API_KEY, f"<secret {RUNPOD_API_KEY}, set later>")
        todo = problems
        problems = _problems(later, stack=stack, root=root)
        todo = [problem for problem in todo if problem not in problems]
    if problems:
        sys.stderr.write(f"{ConfigError(stack, problems)}\n")
        return 1
    sys.stdout.write(f"stack {stack!r}: configuration is valid")
    if todo:
        lines = "\n".join(f"  - {problem}" for problem in todo)
        sys.stdout.write(f", once these secrets are set:\n{lines}\n")
    else:
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
