"""comfyui-runpod: ComfyUI on RunPod with every output in Cloudflare R2.

The composition root. It loads the stack configuration once (validated before any resource
exists), builds one component per concern, and exports what operators and the app need:

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

from components import config
from components.app_deployment import AppDeployment, AppDeploymentArgs
from components.rollout import ProviderSwitch
from components.serverless import ComfyServerless, ComfyServerlessArgs
from components.storage import OutputBucket
from components.video_pod import VideoPod, VideoPodArgs
from components.worker_image import WorkerImage
from components.worker_wiring import WorkerWiring, image_cuda_version

cfg = config.load()

cloudflare_provider = cloudflare.Provider("cloudflare", api_token=cfg.cloudflare.api_token)
github_provider = github.Provider(
    "github", owner=cfg.app.repository_owner, token=cfg.app.github_token
)
on_cloudflare = pulumi.ResourceOptions(providers={"cloudflare": cloudflare_provider})

bucket = OutputBucket(
    "outputs",
    account_id=cfg.cloudflare.account_id,
    settings=cfg.bucket,
    allow_deletion=cfg.data.allow_deletion,
    opts=on_cloudflare,
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
    serverless = ComfyServerless(
        "comfyui",
        ComfyServerlessArgs(
            worker=worker_wiring(),
            endpoint_name=cfg.serverless.name,
            gpu_pools=cfg.serverless.gpu_pools,
            gpu_count=cfg.serverless.gpu_count,
            workers_min=cfg.serverless.workers_min,
            workers_max=cfg.serverless.workers_max,
            idle_timeout_s=cfg.serverless.idle_timeout,
            scaling_type=cfg.serverless.scaler_type,
            scaling_value=cfg.serverless.scaler_value,
            flashboot=cfg.serverless.flashboot,
            container_disk_gb=cfg.serverless.container_disk_gb,
            job_timeout_s=cfg.serverless.job_timeout_seconds,
            # RunPod's own limit sits a minute above the handler's, so the handler reports.
            execution_timeout_ms=(cfg.serverless.job_timeout_seconds + 60) * 1000,
            model_groups=cfg.serverless.model_groups,
            data_center_ids=cfg.serverless.data_center_ids,
            network_volume_size_gb=cfg.serverless.network_volume_gb,
            network_volume_data_center_id=cfg.serverless.network_volume_data_center_id,
            wait_for_rollout=cfg.serverless.wait_for_rollout,
            rollout_timeout_s=cfg.serverless.rollout_timeout_seconds,
            adopt_existing=cfg.serverless.adopt_existing,
            allow_volume_deletion=cfg.data.allow_deletion,
        ),
    )
    comfyui_endpoint_id = serverless.endpoint_id

video: VideoPod | None = None
if cfg.video_pod.enabled:
    video = VideoPod(
        "video",
        VideoPodArgs(
            worker=worker_wiring(),
            data_center_id=cfg.video_pod.data_center_id,
            volume_size_gb=cfg.video_pod.volume_gb,
            container_disk_gb=cfg.video_pod.container_disk_gb,
            model_groups=cfg.video_pod.model_groups,
            start_jupyter=cfg.video_pod.jupyter,
            adopt_existing=cfg.video_pod.adopt_existing,
            allow_volume_deletion=cfg.data.allow_deletion,
            comfy_password=cfg.video_pod.comfy_password,
        ),
    )

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
    AppDeploymentArgs(
        settings=cfg.app,
        rollout=cfg.rollout,
        comfyui_endpoint_id=comfyui_endpoint_id,
        r2_endpoint=bucket.s3_endpoint,
        r2_bucket=bucket.bucket_name,
        r2_public_base_url=cfg.bucket.public_base_url,
        r2_access_key_id=bucket.app_access_key_id,
        r2_secret_access_key=bucket.app_secret_access_key,
    ),
    opts=pulumi.ResourceOptions(providers={"github": github_provider}),
)

pulumi.export("bucketName", bucket.bucket_name)
pulumi.export("s3Endpoint", bucket.s3_endpoint)
pulumi.export("r2Prefix", bucket.prefix)
pulumi.export("publicBaseUrl", bucket.public_base_url)
pulumi.export("imageRef", image.image_ref)
pulumi.export("imageDigest", image.digest)
pulumi.export("kvNamespaceId", switch.namespace_id)
pulumi.export("kvKey", switch.key)
pulumi.export("rolloutFlag", switch.value)
pulumi.export("appEnvironment", app.environment)
pulumi.export("comfyuiEndpointId", comfyui_endpoint_id)
if serverless is not None and cfg.serverless.network_volume_gb is not None:
    pulumi.export("comfyuiNetworkVolumeId", serverless.network_volume_id)
if video is not None:
    pulumi.export("videoPodTemplateId", video.template_id)
    pulumi.export("videoPodNetworkVolumeId", video.network_volume_id)
    # The POST /v2/pods body that starts a session pod (docs/runpod-template-config.md).
    pulumi.export("videoPodRequest", video.pod_request)
# The app's read-only credentials, for `python -m ops smoke`; secret in state and output.
pulumi.export("appR2AccessKeyId", pulumi.Output.secret(bucket.app_access_key_id))
pulumi.export("appR2SecretAccessKey", pulumi.Output.secret(bucket.app_secret_access_key))
