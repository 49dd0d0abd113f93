"""AppDeployment: the app's GitHub deployment environment for this stack, filled in.

Owns: on the app's repository, one deployment environment (``staging``, ``production``; with
required reviewers when configured), its secrets (credentials only: ``RUNPOD_API_KEY``,
``R2_ACCESS_KEY_ID`` and ``R2_SECRET_ACCESS_KEY`` of the app's read-only token, and
``SCENARIO_API_KEY`` / ``SCENARIO_SECRET_API_KEY`` when configured) and its variables
(everything that is not a credential, so the app's maintainers can read it:
``IMAGE_GENERATION_PROVIDER``, ``COMFYUI_TRAFFIC_PERCENT``, ``RUNPOD_COMFYUI_ENDPOINT_ID``,
``R2_ENDPOINT``, ``R2_BUCKET`` and ``R2_PUBLIC_BASE_URL`` when the bucket has one).

Deliberately does not own: the repository itself, or the app's deploy workflow that reads
these values. Every secret value stays a secret Output from config to GitHub, so state
holds it encrypted.
"""

from __future__ import annotations

import pulumi
import pulumi_github as github

from components import Options
from components.config import AppSettings, RolloutSettings


class AppDeployment(pulumi.ComponentResource):
    """A GitHub deployment environment with the app's secrets and variables."""

    environment: pulumi.Output[str]
    """Name of the deployment environment."""
    secret_names: tuple[str, ...]
    """Names of the environment secrets this stack manages."""
    variable_names: tuple[str, ...]
    """Names of the environment variables this stack manages."""

    def __init__(
        self,
        name: str,
        *,
        settings: AppSettings,
        rollout: RolloutSettings,
        comfyui_endpoint_id: pulumi.Input[str] | None,
        r2_endpoint: pulumi.Input[str],
        r2_bucket: pulumi.Input[str],
        r2_access_key_id: pulumi.Input[str],
        r2_secret_access_key: pulumi.Input[str],
        r2_public_base_url: str | None = None,
        opts: Options = None,
    ) -> None:
        """The environment named by `settings`, publishing `rollout` (provider choice and
        ComfyUI share), `comfyui_endpoint_id` (no variable while it is `None`), the output
        bucket's endpoint and name, its public URL (`bucket.publicBaseUrl`) when set, and
        the app's read-only R2 key pair as secrets."""
        super().__init__("comfyui-runpod:index:AppDeployment", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        repository = settings.repository_name
        reviewers = (
            [
                github.RepositoryEnvironmentReviewerArgs(
                    users=list(settings.reviewer_user_ids),
                    teams=list(settings.reviewer_team_ids),
                )
            ]
            if settings.reviewer_user_ids or settings.reviewer_team_ids
            else None
        )
        environment = github.RepositoryEnvironment(
            f"{name}-environment",
            repository=repository,
            environment=settings.environment,
            reviewers=reviewers,
            opts=child,
        )

        secrets: dict[str, pulumi.Input[str] | None] = {
            "RUNPOD_API_KEY": settings.runpod_api_key,
            "R2_ACCESS_KEY_ID": r2_access_key_id,
            "R2_SECRET_ACCESS_KEY": r2_secret_access_key,
            "SCENARIO_API_KEY": settings.scenario_api_key,
            "SCENARIO_SECRET_API_KEY": settings.scenario_secret_api_key,
        }
        candidates: dict[str, pulumi.Input[str] | None] = {
            "IMAGE_GENERATION_PROVIDER": rollout.provider,
            "COMFYUI_TRAFFIC_PERCENT": str(rollout.comfyui_percent),
            "RUNPOD_COMFYUI_ENDPOINT_ID": comfyui_endpoint_id,
            "R2_ENDPOINT": r2_endpoint,
            "R2_BUCKET": r2_bucket,
            "R2_PUBLIC_BASE_URL": r2_public_base_url,
        }
        managed = {key: value for key, value in secrets.items() if value is not None}
        variables = {key: value for key, value in candidates.items() if value is not None}
        # Secrets and variables live side by side in the environment, named after the key.
        in_environment: dict[str, pulumi.Input[str]] = {
            "repository": repository,
            "environment": environment.environment,
        }
        for key, value in managed.items():
            github.ActionsEnvironmentSecret(
                _child_name(name, key),
                github.ActionsEnvironmentSecretArgs(
                    **in_environment, secret_name=key, value=pulumi.Output.secret(value)
                ),
                opts=child,
            )
        for key, text in variables.items():
            github.ActionsEnvironmentVariable(
                _child_name(name, key),
                github.ActionsEnvironmentVariableArgs(
                    **in_environment, variable_name=key, value=text
                ),
                opts=child,
            )

        self.environment = environment.environment
        self.secret_names = tuple(managed)
        self.variable_names = tuple(variables)
        self.register_outputs(
            {
                "environment": self.environment,
                "secret_names": list(self.secret_names),
                "variable_names": list(self.variable_names),
            }
        )


def _child_name(name: str, key: str) -> str:
    """`app-r2-bucket` for `R2_BUCKET`: the child resource of one secret or variable."""
    return f"{name}-{key.lower().replace('_', '-')}"
