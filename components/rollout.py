"""ProviderSwitch: the runtime flag the app reads on every request to pick its provider.

Owns: a Workers KV namespace per stack and one key in it whose JSON value is
``{"provider", "comfyuiPercent", "endpointId", "stack"}``. Because the app reads the flag
per request, ``rollout.provider=scenario`` applied to this one value (``scripts/rollback``)
is a rollback with no redeploy of the app. It is not instant: Workers KV is eventually
consistent, and locations serve their cached copy for up to 60 s (the shortest ``cacheTtl``
Cloudflare allows), so the app sees the change everywhere within about a minute.

Deliberately does not own: the app's Worker binding to the namespace (the app's own
deployment binds it by the exported namespace id), or how the app splits traffic: the flag
states intent, ``comfyuiPercent`` only applies while ``provider`` is ``comfyui``.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_cloudflare as cloudflare

from components import Options
from components.config import RolloutSettings


def flag_value(*, provider: str, comfyui_percent: int, endpoint_id: str, stack: str) -> str:
    """The KV value: compact, key-sorted JSON so an unchanged flag never shows a diff."""
    return json.dumps(
        {
            "provider": provider,
            "comfyuiPercent": comfyui_percent,
            "endpointId": endpoint_id,
            "stack": stack,
        },
        sort_keys=True,
        separators=(",", ":"),
    )


class ProviderSwitch(pulumi.ComponentResource):
    """A Workers KV namespace holding the image-generation provider flag."""

    namespace_id: pulumi.Output[str]
    """Id of the KV namespace (bind it to the app's Worker)."""
    key: pulumi.Output[str]
    """Key of the flag inside the namespace."""
    value: pulumi.Output[str]
    """The flag's JSON value."""

    def __init__(
        self,
        name: str,
        *,
        account_id: str,
        settings: RolloutSettings,
        endpoint_id: pulumi.Input[str],
        namespace_title: str,
        stack: str,
        opts: Options = None,
    ) -> None:
        super().__init__("comfyui-runpod:index:ProviderSwitch", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        namespace = cloudflare.WorkersKvNamespace(
            f"{name}-namespace", account_id=account_id, title=namespace_title, opts=child
        )
        value = pulumi.Output.from_input(endpoint_id).apply(
            lambda endpoint: flag_value(
                provider=settings.provider,
                comfyui_percent=settings.comfyui_percent,
                endpoint_id=endpoint,
                stack=stack,
            )
        )
        cloudflare.WorkersKv(
            f"{name}-flag",
            account_id=account_id,
            namespace_id=namespace.id,
            key_name=settings.kv_key,
            value=value,
            opts=child,
        )
        self.namespace_id = namespace.id
        self.key = pulumi.Output.from_input(settings.kv_key)
        self.value = value
        self.register_outputs(
            {"namespace_id": self.namespace_id, "key": self.key, "value": self.value}
        )
