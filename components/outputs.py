"""The names of the stack outputs the program exports: one list, read by both sides.

``__main__.py`` exports under exactly these names and the ops CLI (``ops/target.py``) reads
exactly these names from ``pulumi stack output --json``, so renaming an output is one edit
here. Constants only: nothing here imports Pulumi.
"""

from __future__ import annotations

BUCKET_NAME = "bucketName"
S3_ENDPOINT = "s3Endpoint"
R2_PREFIX = "r2Prefix"
PUBLIC_BASE_URL = "publicBaseUrl"
IMAGE_REF = "imageRef"
"""``ghcr.io/<owner>/<name>@sha256:<hex>``: the worker image, pinned by digest."""
IMAGE_DIGEST = "imageDigest"
"""``sha256:<hex>``: what prod pins in ``image.digest`` to promote what staging tested."""
KV_NAMESPACE_ID = "kvNamespaceId"
KV_KEY = "kvKey"
ROLLOUT_FLAG = "rolloutFlag"
"""The flag's JSON value, ``{provider, comfyuiPercent, endpointId, stack}``."""
APP_ENVIRONMENT = "appEnvironment"
COMFYUI_ENDPOINT_ID = "comfyuiEndpointId"
APP_R2_ACCESS_KEY_ID = "appR2AccessKeyId"
"""The app's read-only R2 key id (secret)."""
APP_R2_SECRET_ACCESS_KEY = "appR2SecretAccessKey"  # noqa: S105 (an output name, not a secret)
"""The app's read-only R2 secret (secret)."""
COMFYUI_NETWORK_VOLUME_ID = "comfyuiNetworkVolumeId"
"""Only when the stack owns the endpoint and gives it a network volume."""
VIDEO_POD_TEMPLATE_ID = "videoPodTemplateId"
VIDEO_POD_NETWORK_VOLUME_ID = "videoPodNetworkVolumeId"
VIDEO_POD_REQUEST = "videoPodRequest"
"""The ``POST /v2/pods`` body that starts a session pod (``docs/runpod-template-config.md``)."""

#: Exported by every stack.
ALWAYS: tuple[str, ...] = (
    BUCKET_NAME,
    S3_ENDPOINT,
    R2_PREFIX,
    PUBLIC_BASE_URL,
    IMAGE_REF,
    IMAGE_DIGEST,
    KV_NAMESPACE_ID,
    KV_KEY,
    ROLLOUT_FLAG,
    APP_ENVIRONMENT,
    COMFYUI_ENDPOINT_ID,
    APP_R2_ACCESS_KEY_ID,
    APP_R2_SECRET_ACCESS_KEY,
)

#: Exported only when their resource exists (a managed endpoint's volume, the video pod).
WHEN_PRESENT: tuple[str, ...] = (
    COMFYUI_NETWORK_VOLUME_ID,
    VIDEO_POD_TEMPLATE_ID,
    VIDEO_POD_NETWORK_VOLUME_ID,
    VIDEO_POD_REQUEST,
)

#: Every name the program may export.
ALL: tuple[str, ...] = ALWAYS + WHEN_PRESENT
