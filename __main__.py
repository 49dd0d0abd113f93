"""comfyui-runpod: ComfyUI on RunPod with every output in Cloudflare R2.

The composition root. It loads the stack configuration once (validated before any resource
exists), builds one component per concern, and exports what operators and the app need:

- ``OutputBucket``   the R2 bucket, its lifecycle and CORS, bucket-scoped tokens
- ``WorkerImage``    the worker image on GHCR, pinned by digest
- ``ProviderSwitch`` the Workers KV flag the app reads per request
- ``AppDeployment``  the app's GitHub environment: secrets and variables

Providers are explicit, built from declared stack config, so every credential is a key in
``Pulumi.yaml`` and ``docs/configuration.md``.
"""

import pulumi
import pulumi_cloudflare as cloudflare
import pulumi_github as github

from components import config
from components.app_deployment import AppDeployment, AppDeploymentArgs
from components.rollout import ProviderSwitch
from components.storage import OutputBucket
from components.worker_image import WorkerImage

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
    opts=on_cloudflare,
)

image = WorkerImage("worker", settings=cfg.image)

# Seam for the serverless endpoint: an existing endpoint id from config (or none yet) until
# the ComfyServerless component (RunPod issue) supplies its endpoint_id Output here.
comfyui_endpoint_id: pulumi.Input[str] | None = cfg.serverless.endpoint_id

switch = ProviderSwitch(
    "rollout",
    account_id=cfg.cloudflare.account_id,
    settings=cfg.rollout,
    endpoint_id=comfyui_endpoint_id or "",
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
pulumi.export("comfyuiEndpointId", comfyui_endpoint_id or "")
# The app's read-only credentials, for `python -m ops smoke`; secret in state and output.
pulumi.export("appR2AccessKeyId", pulumi.Output.secret(bucket.app_access_key_id))
pulumi.export("appR2SecretAccessKey", pulumi.Output.secret(bucket.app_secret_access_key))
