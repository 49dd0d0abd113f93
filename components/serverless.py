"""ComfyServerless: the RunPod serverless endpoint that runs ComfyUI jobs, and what it needs.

Owns: RunPod account secrets holding the worker's R2 credentials (and, when given, a
Hugging Face token) and a GHCR registry credential built from a `read:packages` pull
token, declared through `components.worker_wiring` under this component's own names;
an optional network volume for models; the serverless endpoint itself, with the image
pinned by digest, hosts restricted to the image's CUDA version or newer, and the worker
environment of the architecture's contract, in which credentials appear only as
`{{ RUNPOD_SECRET_<name> }}` references (plus `WORKER_ENV_REVISION`, so a rotated secret
starts a new release and reaches warm workers); and, when asked, the wait for a new
release (`EndpointRollout`). Scaling comes from the caller (stack config): staging
scales to zero, prod keeps a warm worker.

Deliberately does not own: the R2 bucket and its tokens (`OutputBucket`), the image build
(`WorkerImage`), the RunPod API key (read by the provider's `configure()`, never an
input), or who calls the endpoint (`AppDeployment`, `ProviderSwitch`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.runpod import Endpoint, EndpointRollout, NetworkVolume
from components.runpod.resources import runpod_name_prefix
from components.worker_wiring import WorkerWiring, declare_worker_credentials, worker_env

JOB_API_BASE = "https://api.runpod.ai/v2"
SERVERLESS_VOLUME_MOUNT = "/runpod-volume"


@dataclass(frozen=True, kw_only=True)
class ComfyServerlessArgs:
    """Inputs of `ComfyServerless`; plain values are validated by the stack config (and
    again by the RunPod provider's `check`), not here."""

    worker: WorkerWiring
    """Image, R2 target and credentials, and the GHCR pull credential (shared with `VideoPod`)."""
    endpoint_name: str | None = None
    """Endpoint name; default `<project>-<stack>-comfyui`."""
    name_prefix: str | None = None
    """Prefix of account-unique RunPod names (secrets, registry); default from project and
    stack, e.g. `comfyui_runpod_staging`."""
    gpu_pools: tuple[str, ...] = ("ADA_24", "AMPERE_24")
    """GPU pools workers may run on, a set (FLUX fp8 needs >= 24 GB)."""
    gpu_count: int = 1
    """GPUs per worker."""
    workers_min: int = 0
    """Always-on workers: 0 scales to zero (staging), 1 removes cold starts (prod)."""
    workers_max: int = 3
    """Upper bound of workers."""
    idle_timeout_s: int = 5
    """Seconds an idle worker stays up, 1..3600."""
    scaling_type: str = "QUEUE_DELAY"
    """`QUEUE_DELAY` (seconds waited) or `REQUEST_COUNT` (requests per worker)."""
    scaling_value: float = 4
    """Queue delay in seconds (>= 0.5) or requests per worker (>= 1)."""
    flashboot: str = "FLASHBOOT"
    """`OFF`, `FLASHBOOT` or `PRIORITY_FLASHBOOT`."""
    execution_timeout_ms: int = 660_000
    """RunPod's per-job execution timeout; must exceed `job_timeout_s`."""
    container_disk_gb: int = 40
    """Container disk per worker in GB."""
    model_groups: tuple[str, ...] = ("flux_dev_fp8", "background_removal")
    """`MODEL_GROUPS` the worker verifies or downloads at boot."""
    data_center_ids: tuple[str, ...] = ()
    """Restrict workers to these data centers; empty means anywhere."""
    network_volume_size_gb: int | None = None
    """Attach a network volume of this size for models (None: models in the image)."""
    network_volume_data_center_id: str | None = None
    """Data center of that volume (required with a size; workers then run there)."""
    job_timeout_s: int = 600
    """Handler-side job timeout (`JOB_TIMEOUT_S`)."""
    wait_for_rollout: bool = False
    """Make `pulumi up` wait until a new release runs on every worker (an
    `EndpointRollout` beside the endpoint)."""
    rollout_timeout_s: int = 900
    """How long that wait may take before `pulumi up` fails."""
    adopt_existing: bool = False
    """Take over RunPod objects that already carry this component's names (otherwise such
    an object fails the `up`, naming it)."""
    allow_volume_deletion: bool = False
    """`data.allowDeletion`: unless true, the models volume is registered protected."""


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
        self, name: str, args: ComfyServerlessArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("comfyui-runpod:index:ComfyServerless", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.name_prefix or runpod_name_prefix(pulumi.get_project(), pulumi.get_stack())
        endpoint_name = args.endpoint_name or f"{pulumi.get_project()}-{pulumi.get_stack()}-comfyui"

        credentials = declare_worker_credentials(
            name,
            args.worker,
            parent=self,
            secret_name_prefix=prefix,
            registry_name=f"{prefix}_ghcr_serverless",
            described_as=f"the {endpoint_name} workers",
            adopt_existing=args.adopt_existing,
        )

        volume_ids: list[pulumi.Input[str]] = []
        data_centers = args.data_center_ids
        env = worker_env(
            args.worker,
            mode="serverless",
            model_groups=args.model_groups,
            mode_env={"JOB_TIMEOUT_S": str(args.job_timeout_s)},
            references=credentials.references,
            revision=credentials.revision,
        )
        volume_id: pulumi.Output[str] = pulumi.Output.from_input("")
        if args.network_volume_size_gb is not None and args.network_volume_data_center_id:
            volume = NetworkVolume(
                f"{name}-models",
                name=f"{endpoint_name}-models",
                size_gb=args.network_volume_size_gb,
                data_center_id=args.network_volume_data_center_id,
                adopt_existing=args.adopt_existing,
                opts=pulumi.ResourceOptions(parent=self, protect=not args.allow_volume_deletion),
            )
            volume_ids.append(volume.id)
            data_centers = data_centers or (args.network_volume_data_center_id,)
            env["MODELS_DIR"] = f"{SERVERLESS_VOLUME_MOUNT}/models"
            volume_id = volume.id

        endpoint = Endpoint(
            f"{name}-endpoint",
            name=endpoint_name,
            image=args.worker.image,
            env=env,
            registry_id=credentials.registry.id,
            gpu_pools=args.gpu_pools,
            gpu_count=args.gpu_count,
            min_cuda_version=args.worker.cuda_version,
            workers_min=args.workers_min,
            workers_max=args.workers_max,
            idle_timeout_s=args.idle_timeout_s,
            scaling_type=args.scaling_type,
            scaling_value=args.scaling_value,
            container_disk_gb=args.container_disk_gb,
            data_center_ids=data_centers,
            network_volume_ids=volume_ids,
            timeout_ms=args.execution_timeout_ms,
            flashboot=args.flashboot,
            adopt_existing=args.adopt_existing,
            opts=child,
        )
        if args.wait_for_rollout:
            # A resource of its own: a wait that times out fails only the wait, and the
            # endpoint stays in state with its id (the next `up` waits again).
            EndpointRollout(
                f"{name}-rollout",
                endpoint=endpoint,
                timeout_s=args.rollout_timeout_s,
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
