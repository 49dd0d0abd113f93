"""VideoPod: the network volume and pod template for WAN 2.2 video work on RunPod pods.

Owns: a network volume (models and outputs survive the pod; mounted at `/workspace`);
RunPod secrets with the pod's R2 credentials (and a Hugging Face token when given) and a
GHCR registry credential, declared through `components.worker_wiring` under this
component's own names; and a pod template in the hearmeman-extended style: ComfyUI on
8188/http, JupyterLab on 8888/http (only when `videoPod.jupyter`; `ENABLE_JUPYTER` tells
`start.sh` the same), SSH on 22/tcp, `MODE=pod`, `ENABLE_R2_SYNC=true` so the sync daemon
lands every output in R2, and `MODEL_GROUPS` (WAN 2.2 720p T2V by default). ComfyUI's port
answers only with a password: a RunPod secret holding `videoPod.comfyPassword`, referenced as
`COMFYUI_PASSWORD` (start.sh's nginx proxy checks it; without it 8188 stays closed). It exports
the exact `POST /v2/pods` body that starts a pod from the template with the volume attached.
Its settings are the stack config's `videoPod.*` keys (`VideoPodSettings`).

Deliberately does not own: running pods. A pod bills by the hour and is started by a
person for a session (console or `POST /v2/pods` with `pod_request`), so the stack never
creates or destroys one. Its secrets and registry credential are separate from the
serverless endpoint's so each component stands alone (RunPod names are account-unique).
"""

from __future__ import annotations

from typing import Any

import pulumi

from components import Options
from components.config import VideoPodSettings
from components.runpod import NetworkVolume, Template
from components.runpod.resources import runpod_name_prefix
from components.worker_wiring import (
    WorkerWiring,
    cuda_versions_from,
    declare_worker_credentials,
    worker_env,
)

POD_VOLUME_MOUNT = "/workspace"
POD_PORTS = ("8188/http", "8888/http", "22/tcp")
JUPYTER_PORT = "8888/http"
POD_GPU_TYPE = "NVIDIA A100 80GB PCIe"
"""GPU type written into `pod_request` (WAN 2.2 720p wants 48-80 GB)."""


def pod_ports(*, jupyter: bool) -> tuple[str, ...]:
    """The template's ports: ComfyUI, JupyterLab (only when it runs) and SSH."""
    return tuple(port for port in POD_PORTS if jupyter or port != JUPYTER_PORT)


class VideoPod(pulumi.ComponentResource):
    """A network volume plus a ComfyUI/Jupyter/SSH pod template that syncs outputs to R2."""

    template_id: pulumi.Output[str]
    """RunPod template id to start pods from."""
    network_volume_id: pulumi.Output[str]
    """Network volume to attach at `/workspace`."""
    data_center_id: pulumi.Output[str]
    """Data center pods must run in (the volume's)."""
    pod_request: pulumi.Output[dict[str, Any]]
    """`POST /v2/pods` body that starts a pod from the template with the volume."""
    secret_names: pulumi.Output[dict[str, str]]
    """Pod env variable -> RunPod secret name it references."""

    def __init__(
        self, name: str, *, settings: VideoPodSettings, worker: WorkerWiring, opts: Options = None
    ) -> None:
        super().__init__("comfyui-runpod:index:VideoPod", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = runpod_name_prefix(pulumi.get_project(), pulumi.get_stack())
        template_name = f"{pulumi.get_project()}-{pulumi.get_stack()}-video-pod"

        volume = NetworkVolume(
            f"{name}-volume",
            name=f"{template_name}-workspace",
            size_gb=settings.volume_gb,
            data_center_id=settings.data_center_id,
            adopt_existing=settings.adopt_existing,
            opts=pulumi.ResourceOptions(parent=self, protect=not settings.allow_deletion),
        )

        # The proxy password is one more worker credential: a RunPod secret the template
        # references, in the rotation marker, adopted like the others.
        extra = (
            [("COMFYUI_PASSWORD", "comfy-password", settings.comfy_password)]
            if settings.comfy_password is not None
            else []
        )
        credentials = declare_worker_credentials(
            name,
            worker,
            parent=self,
            secret_name_prefix=f"{prefix}_pod",
            registry_name=f"{prefix}_ghcr_pod",
            described_as=f"the {template_name} pods",
            adopt_existing=settings.adopt_existing,
            extra=extra,
        )
        mode_env: dict[str, pulumi.Input[str]] = {
            "ENABLE_R2_SYNC": "true",
            "ENABLE_JUPYTER": "true" if settings.jupyter else "false",
        }
        secret_names = dict(credentials.secret_names)
        env = worker_env(
            worker,
            mode="pod",
            model_groups=settings.model_groups,
            mode_env=mode_env,
            references=credentials.references,
            revision=credentials.revision,
        )

        template = Template(
            f"{name}-template",
            name=template_name,
            image=worker.image,
            env=env,
            ports=pod_ports(jupyter=settings.jupyter),
            container_disk_gb=settings.container_disk_gb,
            registry_id=credentials.registry.id,
            serverless=False,
            start_ssh=True,
            start_jupyter=settings.jupyter,
            # Templates take only an exact set (no minCudaVersion in v2): the image's
            # version and every newer one RunPod hosts report.
            allowed_cuda_versions=(
                cuda_versions_from(worker.cuda_version) if worker.cuda_version else ()
            ),
            adopt_existing=settings.adopt_existing,
            opts=child,
        )

        self.template_id = template.id
        self.network_volume_id = volume.id
        self.data_center_id = pulumi.Output.from_input(settings.data_center_id)
        self.secret_names = pulumi.Output.from_input(secret_names)
        self.pod_request = pulumi.Output.all(template.id, volume.id).apply(
            lambda ids: {
                "name": template_name,
                "templateId": ids[0],
                "gpu": {"id": POD_GPU_TYPE, "count": 1},
                "dataCenterIds": [settings.data_center_id],
                "mounts": {"network": [{"volumeId": ids[1], "path": POD_VOLUME_MOUNT}]},
                "startJupyter": settings.jupyter,
                "startSsh": True,
            }
        )
        self.register_outputs(
            {
                "template_id": self.template_id,
                "network_volume_id": self.network_volume_id,
                "data_center_id": self.data_center_id,
                "pod_request": self.pod_request,
                "secret_names": self.secret_names,
            }
        )
