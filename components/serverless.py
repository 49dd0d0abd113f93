"""ComfyServerless: the RunPod serverless endpoint that runs ComfyUI jobs, and what it needs.

Owns: RunPod account secrets holding the worker's R2 credentials (and, when given, a
Hugging Face token) and a GHCR registry credential built from a `read:packages` pull
token, declared through `components.worker_wiring` under this component's own names;
an optional network volume for models; the serverless endpoint itself, with the image
pinned by digest, hosts restricted to the image's CUDA version or newer, and the worker
environment of the architecture's contract, in which credentials appear only as
`{{ RUNPOD_SECRET_<name> }}` references (plus `WORKER_ENV_REVISION`, so a rotated secret
starts a new release and reaches warm workers); and, when asked, the wait for a new
release (`EndpointRollout`). Its settings are the stack config's `serverless.*` keys
(`ServerlessSettings`): staging scales to zero, prod keeps a warm worker.

Deliberately does not own: the R2 bucket and its tokens (`OutputBucket`), the image build
(`WorkerImage`), the RunPod API key (read by the provider's `configure()`, never an
input), or who calls the endpoint (`AppDeployment`, `ProviderSwitch`).
"""

from __future__ import annotations

import pulumi

from components import Options
from components.config import ServerlessSettings
from components.runpod import Endpoint, EndpointRollout, NetworkVolume
from components.runpod.resources import runpod_name_prefix
from components.worker_wiring import WorkerWiring, declare_worker_credentials, worker_env

JOB_API_BASE = "https://api.runpod.ai/v2"
SERVERLESS_VOLUME_MOUNT = "/runpod-volume"
HANDLER_MARGIN_S = 60
"""Seconds RunPod's execution timeout sits above the handler's ``JOB_TIMEOUT_S``."""


def execution_timeout_ms(job_timeout_seconds: int) -> int:
    """RunPod's per-job limit: a minute above the handler's, so the handler reports first."""
    return (job_timeout_seconds + HANDLER_MARGIN_S) * 1000


class ComfyServerless(pulumi.ComponentResource):
    """A RunPod serverless ComfyUI endpoint with its secrets and registry credential."""

    endpoint_id: pulumi.Output[str]
    """RunPod endpoint id (`RUNPOD_COMFYUI_ENDPOINT_ID`)."""
    endpoint_name: pulumi.Output[str]
    """Endpoint name."""
    job_api_url: pulumi.Output[str]
    """Base URL of the job API: `<url>/run`, `/runsync`, `/status/<id>`, `/health`."""
    secret_names: pulumi.Output[dict[str, str]]
    """Worker env variable -> RunPod secret name it references."""
    registry_id: pulumi.Output[str]
    """RunPod id of the GHCR credential."""
    network_volume_id: pulumi.Output[str]
    """Id of the models volume, or empty without one."""

    def __init__(
        self, name: str, *, settings: ServerlessSettings, worker: WorkerWiring, opts: Options = None
    ) -> None:
        super().__init__("comfyui-runpod:index:ComfyServerless", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = runpod_name_prefix(pulumi.get_project(), pulumi.get_stack())
        endpoint_name = settings.name

        credentials = declare_worker_credentials(
            name,
            worker,
            parent=self,
            secret_name_prefix=prefix,
            registry_name=f"{prefix}_ghcr_serverless",
            described_as=f"the {endpoint_name} workers",
            adopt_existing=settings.adopt_existing,
        )

        volume_ids: list[pulumi.Input[str]] = []
        data_centers = settings.data_center_ids
        env = worker_env(
            worker,
            mode="serverless",
            model_groups=settings.model_groups,
            mode_env={"JOB_TIMEOUT_S": str(settings.job_timeout_seconds)},
            references=credentials.references,
            revision=credentials.revision,
        )
        volume_id: pulumi.Output[str] = pulumi.Output.from_input("")
        if settings.network_volume_gb is not None and settings.network_volume_data_center_id:
            volume = NetworkVolume(
                f"{name}-models",
                name=f"{endpoint_name}-models",
                size_gb=settings.network_volume_gb,
                data_center_id=settings.network_volume_data_center_id,
                adopt_existing=settings.adopt_existing,
                opts=pulumi.ResourceOptions(parent=self, protect=not settings.allow_deletion),
            )
            volume_ids.append(volume.id)
            data_centers = data_centers or (settings.network_volume_data_center_id,)
            env["MODELS_DIR"] = f"{SERVERLESS_VOLUME_MOUNT}/models"
            volume_id = volume.id

        endpoint = Endpoint(
            f"{name}-endpoint",
            name=endpoint_name,
            image=worker.image,
            env=env,
            registry_id=credentials.registry.id,
            gpu_pools=settings.gpu_pools,
            excluded_gpu_types=settings.excluded_gpu_types,
            gpu_count=settings.gpu_count,
            min_cuda_version=worker.cuda_version,
            workers_min=settings.workers_min,
            workers_max=settings.workers_max,
            idle_timeout_s=settings.idle_timeout,
            scaling_type=settings.scaler_type,
            scaling_value=settings.scaler_value,
            container_disk_gb=settings.container_disk_gb,
            data_center_ids=data_centers,
            network_volume_ids=volume_ids,
            timeout_ms=execution_timeout_ms(settings.job_timeout_seconds),
            flashboot=settings.flashboot,
            adopt_existing=settings.adopt_existing,
            opts=child,
        )
        if settings.wait_for_rollout:
            # A resource of its own: a wait that times out fails only the wait, and the
            # endpoint stays in state with its id (the next `up` waits again).
            EndpointRollout(
                f"{name}-rollout",
                endpoint=endpoint,
                timeout_s=settings.rollout_timeout_seconds,
                opts=child,
            )

        self.endpoint_id = endpoint.id
        self.endpoint_name = endpoint.name
        self.job_api_url = endpoint.id.apply(lambda eid: f"{JOB_API_BASE}/{eid}")
        self.secret_names = pulumi.Output.from_input(dict(credentials.secret_names))
        self.registry_id = credentials.registry.id
        self.network_volume_id = volume_id
        self.register_outputs(
            {
                "endpoint_id": self.endpoint_id,
                "endpoint_name": self.endpoint_name,
                "job_api_url": self.job_api_url,
                "secret_names": self.secret_names,
                "registry_id": self.registry_id,
                "network_volume_id": self.network_volume_id,
            }
        )
