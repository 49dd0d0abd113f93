"""AppDeployment under Pulumi mocks: the app's GitHub environment, its secrets and variables."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest

from components.app_deployment import AppDeployment
from components.config import StackConfig
from tests.components.builders import stack_config
from tests.fakes.pulumi_mocks import RecordingMocks, mocked, pulumi_loop, run, settle

pytestmark = pytest.mark.usefixtures(pulumi_loop.__name__)

ENVIRONMENT = "github:index/repositoryEnvironment:RepositoryEnvironment"
SECRET = "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret"
VARIABLE = "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable"


def build(mocks: RecordingMocks, cfg: StackConfig, endpoint: str | None = "ep-1") -> AppDeployment:
    """Run an AppDeployment with fake R2 values."""
    built: list[AppDeployment] = []

    def program() -> None:
        app = AppDeployment(
            "app",
            settings=cfg.app,
            rollout=cfg.rollout,
            comfyui_endpoint_id=endpoint,
            r2_endpoint="https://acct.r2.cloudflarestorage.com",
            r2_bucket="bucket",
            r2_public_base_url=cfg.bucket.public_base_url,
            r2_access_key_id=pulumi.Output.secret("read-key-id"),
            r2_secret_access_key=pulumi.Output.secret("read-secret"),
        )
        built.append(app)

    run(program)
    return built[0]


def secrets(mocks: RecordingMocks) -> dict[str, str]:
    """Environment secrets by name."""
    return {r.inputs["secretName"]: r.inputs["value"] for r in mocks.of_type(SECRET)}


def variables(mocks: RecordingMocks) -> dict[str, str]:
    """Environment variables by name."""
    return {r.inputs["variableName"]: r.inputs["value"] for r in mocks.of_type(VARIABLE)}


def test_credentials_are_secrets_and_only_credentials_are() -> None:
    """RunPod key and the read-only R2 key pair are secrets; nothing else is."""
    with mocked() as mocks:
        build(mocks, stack_config(app_runpodApiKey="rp-key"))
        assert secrets(mocks) == {
            "RUNPOD_API_KEY": "rp-key",
            "R2_ACCESS_KEY_ID": "read-key-id",
            "R2_SECRET_ACCESS_KEY": "read-secret",
        }


def test_values_that_are_not_credentials_are_readable_variables() -> None:
    """Endpoint id, S3 endpoint, bucket and public URL are variables the app's
    maintainers can read (a secret cannot be read back, even by them)."""
    with mocked() as mocks:
        build(mocks, stack_config(bucket_publicBaseUrl="https://cdn.example.com"))
        assert variables(mocks) == {
            "IMAGE_GENERATION_PROVIDER": "scenario",
            "COMFYUI_TRAFFIC_PERCENT": "0",
            "RUNPOD_COMFYUI_ENDPOINT_ID": "ep-1",
            "R2_ENDPOINT": "https://acct.r2.cloudflarestorage.com",
            "R2_BUCKET": "bucket",
            "R2_PUBLIC_BASE_URL": "https://cdn.example.com",
        }
        assert all(r.secret_paths == frozenset() for r in mocks.of_type(VARIABLE))
        assert not set(variables(mocks)) & set(secrets(mocks))


def test_no_public_url_means_no_public_url_variable() -> None:
    """Without bucket.publicBaseUrl the app presigns; no empty variable is written."""
    with mocked() as mocks:
        build(mocks, stack_config())
        assert "R2_PUBLIC_BASE_URL" not in variables(mocks)


def test_every_secret_value_is_secret_in_state() -> None:
    """Secret values reach the provider wrapped as secrets, so state encrypts them."""
    with mocked() as mocks:
        build(
            mocks,
            stack_config(
                app_runpodApiKey="rp-key", app_scenarioApiKey="s", app_scenarioSecretApiKey="t"
            ),
        )
        registered = mocks.of_type(SECRET)
        assert len(registered) == 5
        for resource in registered:
            assert "value" in resource.secret_paths, resource.inputs["secretName"]


def test_scenario_secrets_are_set_only_when_configured() -> None:
    """Scenario credentials are optional and never written empty."""
    with mocked() as mocks:
        build(mocks, stack_config())
        assert not {"SCENARIO_API_KEY", "SCENARIO_SECRET_API_KEY"} & set(secrets(mocks))
    with mocked() as mocks:
        build(mocks, stack_config(app_scenarioApiKey="s", app_scenarioSecretApiKey="t"))
        assert secrets(mocks)["SCENARIO_API_KEY"] == "s"
        assert secrets(mocks)["SCENARIO_SECRET_API_KEY"] == "t"


def test_no_endpoint_yet_means_no_endpoint_variable() -> None:
    """Until an endpoint exists, RUNPOD_COMFYUI_ENDPOINT_ID is not written empty."""
    with mocked() as mocks:
        build(mocks, stack_config(), endpoint=None)
        assert "RUNPOD_COMFYUI_ENDPOINT_ID" not in variables(mocks)
        assert "RUNPOD_COMFYUI_ENDPOINT_ID" not in secrets(mocks)


def test_variables_publish_the_provider_choice() -> None:
    """IMAGE_GENERATION_PROVIDER and COMFYUI_TRAFFIC_PERCENT follow the rollout config."""
    with mocked() as mocks:
        build(
            mocks,
            stack_config(
                rollout_provider="runpod", rollout_comfyuiPercent="25", app_runpodApiKey="k"
            ),
        )
        published = variables(mocks)
        assert published["IMAGE_GENERATION_PROVIDER"] == "comfyui"
        assert published["COMFYUI_TRAFFIC_PERCENT"] == "25"


def test_everything_lands_in_this_stacks_environment_of_the_app_repository() -> None:
    """prod fills `production` on the repository named in app.repository."""
    with mocked(stack="prod") as mocks:
        deployment = build(
            mocks,
            stack_config("prod", image_digest="sha256:" + "d" * 64),
        )
        env = mocks.one(ENVIRONMENT).inputs
        assert env == {"repository": "asset-studio", "environment": "production"}
        for resource in mocks.of_type(SECRET) + mocks.of_type(VARIABLE):
            assert resource.inputs["repository"] == "asset-studio"
            assert resource.inputs["environment"] == "production"
        assert settle(deployment.environment)[0] == "production"


def test_required_reviewers_are_set_when_configured() -> None:
    """Reviewer ids become the environment's protection rule."""
    with mocked() as mocks:
        build(mocks, stack_config(app_reviewerUserIds="11,12", app_reviewerTeamIds="7"))
        assert mocks.one(ENVIRONMENT).inputs["reviewers"] == [{"users": [11, 12], "teams": [7]}]
    with mocked() as mocks:
        build(mocks, stack_config())
        assert "reviewers" not in mocks.one(ENVIRONMENT).inputs


#: Names that were environment secrets before the secrets/variables split, variables since.
MOVED_TO_VARIABLES = ("RUNPOD_COMFYUI_ENDPOINT_ID", "R2_ENDPOINT", "R2_BUCKET")


def test_the_migration_note_keeps_the_app_working_across_the_up_that_moves_names() -> None:
    """The `up` that moves a name creates the variable and deletes the secret in one run, so
    switching the app to `vars.` before it reads nothing, and after it leaves a window: the
    app's maintainers are told to read `vars.X || secrets.X`, where they will look."""
    with mocked() as mocks:
        build(mocks, stack_config())
        assert set(MOVED_TO_VARIABLES) <= set(variables(mocks))
        assert not set(MOVED_TO_VARIABLES) & set(secrets(mocks))
    root = Path(__file__).resolve().parents[2]
    for doc in ("docs/app-integration.md", "CHANGELOG.md"):
        text = (root / doc).read_text(encoding="utf-8")
        for name in MOVED_TO_VARIABLES:
            assert f"${{{{ vars.{name} || secrets.{name} }}}}" in text, (doc, name)
