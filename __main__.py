"""comfyui-runpod: ComfyUI on RunPod with every output in Cloudflare R2.

The composition root. It loads the stack configuration once (validated before any resource
exists), builds one component per concern from its section of the config
(``settings=cfg.<section>``) and the outputs of the others, and exports what operators and
the app need:

- ``OutputBucket``   the R2 bucket, its lifecycle and CORS, bucket-scoped tokens
- ``WorkerImage``    the worker image on GHCR, pinned by digest
- ``ComfyServerless`` the RunPod serverless ComfyUI endpoint (unless one is adopted)
- ``VideoPod``       the WAN 2.2 video pod's volume and template (when enabled)
- ``ProviderSwitch`` the Workers KV flag the app reads per request
- ``AppDeployment``  the app's GitHub environment: secrets and variables

Providers are explicit, built from declared stack config, so every credential is a key in
``Pulumi.yaml`` and ``docs/configuration.md``.
"""

import functools

import pulumi
import pulumi_cloudflare as cloudflare
import pulumi_github as github

from components import config, outputs
from components.app_deployment import AppDeployment
from components.rollout import ProviderSwitch
from components.serverless import ComfyServerless
from components.storage import OutputBucket
from components.video_pod import VideoPod
from components.worker_image import WorkerImage
from components.worker_wiring import WorkerWiring, image_cuda_version

cfg = config.load()

cloudflare_provider = cloudflare.Provider("cloudflare", api_token=cfg.cloudflare.api_token)
github_provider = github.Provider(
    "github", owner=cfg.app.repository_owner, token=cfg.app.github_token
)
on_cloudflare = pulumi.ResourceOptions(providers={"cloudflare": cloudflare_provider})

bucket = OutputBucket(
    "outputs", account_id=cfg.cloudflare.account_id, settings=cfg.bucket, opts=on_cloudflare
)

image = WorkerImage("worker", settings=cfg.image, hf_token=cfg.models.hf_token)


@functools.cache
def worker_wiring() -> WorkerWiring:
    """The one set of inputs both RunPod components share, built when the first needs it.

    Built lazily because the pull token exists only when RunPod pulls the image (a managed
    endpoint or the video pod), which config validation guarantees. The registry credential
    is that read-only pull token (``image.pullToken``); the push token
    (``image.registryToken``) stays with the build and never reaches RunPod.
    """
    if cfg.image.pull_token is None:
        raise ValueError("image.pullToken is required when RunPod pulls the image")
    return WorkerWiring(
        image=image.image_ref,
        r2_endpoint=bucket.s3_endpoint,
        r2_bucket=bucket.bucket_name,
        r2_prefix=bucket.prefix,
        r2_access_key_id=bucket.worker_access_key_id,
        r2_secret_access_key=bucket.worker_secret_access_key,
        r2_public_base_url=cfg.bucket.public_base_url,
        registry_username=cfg.image.pull_username,
        registry_token=cfg.image.pull_token,
        hf_token=cfg.models.hf_token,
        cuda_version=image_cuda_version(),
    )


# serverless.endpointId adopts an endpoint managed elsewhere; otherwise the stack owns one.
comfyui_endpoint_id: pulumi.Input[str]
serverless: ComfyServerless | None = None
if cfg.serverless.endpoint_id is not None:
    comfyui_endpoint_id = cfg.serverless.endpoint_id
else:
    serverless = ComfyServerless("comfyui", settings=cfg.serverless, worker=worker_wiring())
    comfyui_endpoint_id = serverless.endpoint_id

video: VideoPod | None = None
if cfg.video_pod.enabled:
    video = VideoPod("video", settings=cfg.video_pod, worker=worker_wiring())

switch = ProviderSwitch(
    "rollout",
    account_id=cfg.cloudflare.account_id,
    settings=cfg.rollout,
    endpoint_id=comfyui_endpoint_id,
    namespace_title=f"{cfg.project}-{cfg.stack}-rollout",
    stack=cfg.stack,
    opts=on_cloudflare,
)

app = AppDeployment(
    "app",
    settings=cfg.app,
    rollout=cfg.rollout,
    comfyui_endpoint_id=comfyui_endpoint_id,
    r2_endpoint=bucket.s3_endpoint,
    r2_bucket=bucket.bucket_name,
    r2_public_base_url=cfg.bucket.public_base_url,
    r2_access_key_id=bucket.app_access_key_id,
    r2_secret_access_key=bucket.app_secret_access_key,
    opts=pulumi.ResourceOptions(providers={"github": github_provider}),
)

pulumi.export(outputs.BUCKET_NAME, bucket.bucket_name)
pulumi.export(outputs.S3_ENDPOINT, bucket.s3_endpoint)
pulumi.export(outputs.R2_PREFIX, bucket.prefix)
pulumi.export(outputs.PUBLIC_BASE_URL, bucket.public_base_url)
pulumi.export(outputs.IMAGE_REF, image.image_ref)
pulumi.export(outputs.IMAGE_DIGEST, image.digest)
pulumi.export(outputs.KV_NAMESPACE_ID, switch.namespace_id)
pulumi.export(outputs.KV_KEY, switch.key)
pulumi.export(outputs.ROLLOUT_FLAG, switch.value)
pulumi.export(outputs.APP_ENVIRONMENT, app.environment)
pulumi.export(outputs.COMFYUI_ENDPOINT_ID, comfyui_endpoint_id)
if serverless is not None and cfg.serverless.network_volume_gb is not None:
    pulumi.export(outputs.COMFYUI_NETWORK_VOLUME_ID, serverless.network_volume_id)
if video is not None:
    pulumi.export(outputs.VIDEO_POD_TEMPLATE_ID, video.template_id)
    pulumi.export(outputs.VIDEO_POD_NETWORK_VOLUME_ID, video.network_volume_id)
    # The POST /v2/pods body that starts a session pod (docs/runpod-template-config.md).
    pulumi.export(outputs.VIDEO_POD_REQUEST, video.pod_request)
# The app's read-only credentials, for `python -m ops smoke`; secret in state and output.
pulumi.export(outputs.APP_R2_ACCESS_KEY_ID, pulumi.Output.secret(bucket.app_access_key_id))
pulumi.export(outputs.APP_R2_SECRET_ACCESS_KEY, pulumi.Output.secret(bucket.app_secret_access_key))
