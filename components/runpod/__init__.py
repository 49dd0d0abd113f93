"""RunPod managed through a Pulumi dynamic provider over REST API v2.

`api` is the HTTP client, `providers` the dynamic providers (their import path is stored
in every stack's state: never move or rename them), `checks` what their `check` runs
offline, `limits` RunPod's bounds and enums (shared with the stack config), `resources`
the typed resources, `schema` the project's description of the v2 bodies (held against
RunPod's spec by a conformance test).
"""

from components.runpod.api import RunPodApiError
from components.runpod.checks import is_secret_reference, secret_reference
from components.runpod.limits import GPU_POOLS
from components.runpod.resources import (
    Endpoint,
    EndpointRollout,
    NetworkVolume,
    Registry,
    Secret,
    Template,
)

__all__ = [
    "GPU_POOLS",
    "Endpoint",
    "EndpointRollout",
    "NetworkVolume",
    "Registry",
    "RunPodApiError",
    "Secret",
    "Template",
    "is_secret_reference",
    "secret_reference",
]
