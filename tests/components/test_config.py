"""StackConfig validation, without the Pulumi runtime: one test per rule, message asserted."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components.config import ConfigError, StackConfig, parse, stack_file_values
from components.config import _main as config_main
from tests.fakes.pulumi_mocks import pulumi_loop
from tests.fakes.stack_values import MINIMAL, ROOT

pytestmark = pytest.mark.usefixtures(pulumi_loop.__name__)


def config_with(stack: str = "staging", **changes: str | None) -> StackConfig:
    """Parse MINIMAL with keys changed (``bucket_name`` -> ``bucket.name``; None removes)."""
    values = dict(MINIMAL)
    for name, value in changes.items():
        key = name.replace("__", ":").replace("_", ".", 1)
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return parse(values, stack=stack)


def problems(stack: str = "staging", **changes: str | None) -> str:
    """The ConfigError message for MINIMAL with ``changes``."""
    with pytest.raises(ConfigError) as caught:
        config_with(stack, **changes)
    return str(caught.value)


def test_minimal_config_takes_the_documented_defaults() -> None:
    """Unset keys fall back to the defaults Pulumi.yaml declares."""
    cfg = config_with()
    assert cfg.bucket.name == "comfyui-runpod-staging"
    assert cfg.bucket.prefix == "outputs/"
    assert cfg.rollout.provider == "scenario"
    assert cfg.rollout.comfyui_percent == 0
    assert cfg.image.tag == "staging"
    assert cfg.image.digest is None
    assert cfg.serverless.gpu_pools == ("ADA_24", "AMPERE_24")
    assert cfg.app.environment == "staging"
    assert not cfg.is_production


def test_percent_outside_0_to_100_names_key_value_and_fix() -> None:
    """rollout.comfyuiPercent must be 0..100."""
    message = problems(rollout_comfyuiPercent="150")
    assert "rollout.comfyuiPercent must be 0..100, got 150" in message
    assert "pulumi config set rollout.comfyuiPercent <0..100> --stack staging" in message


def test_percent_that_is_not_a_number_is_rejected() -> None:
    """A non-integer percent is reported, not crashed on."""
    assert "rollout.comfyuiPercent must be an integer 0..100, got 'ten'" in problems(
        rollout_comfyuiPercent="ten"
    )


def test_unknown_provider_is_rejected_with_the_choices() -> None:
    """rollout.provider must be scenario or comfyui (runpod accepted)."""
    message = problems(rollout_provider="midjourney")
    assert "rollout.provider must be scenario, comfyui or runpod" in message
    assert "got 'midjourney'" in message
    assert "pulumi config set rollout.provider <scenario|comfyui> --stack staging" in message


def test_runpod_provider_is_normalised_to_comfyui() -> None:
    """The rollout plan's alias `runpod` means comfyui."""
    cfg = config_with(rollout_provider="runpod", app_runpodApiKey="k")
    assert cfg.rollout.provider == "comfyui"


def test_workers_min_above_max_is_rejected() -> None:
    """serverless.workersMin must not exceed serverless.workersMax."""
    message = problems(serverless_workersMin="4", serverless_workersMax="2")
    assert "serverless.workersMin (4) must not exceed serverless.workersMax (2)" in message
    assert "pulumi config set serverless.workersMin 2 --stack staging" in message


@pytest.mark.parametrize("bad", ["0", "3601"])
def test_idle_timeout_outside_1_to_3600_is_rejected(bad: str) -> None:
    """serverless.idleTimeout must be 1..3600 (RunPod's bounds)."""
    message = problems(serverless_idleTimeout=bad)
    assert f"serverless.idleTimeout must be 1..3600, got {bad}" in message
    assert "pulumi config set serverless.idleTimeout <1..3600> --stack staging" in message


def test_unknown_gpu_pool_is_rejected_with_the_known_list() -> None:
    """serverless.gpuPools entries must come from RunPod's pool list."""
    message = problems(serverless_gpuPools="ADA_24,RTX_9090")
    assert "serverless.gpuPools must list known GPU pools" in message
    assert "got ['RTX_9090']" in message
    assert "HOPPER_141" in message
    assert "pulumi config set serverless.gpuPools ADA_24,AMPERE_24 --stack staging" in message


@pytest.mark.parametrize(
    "bad", ["sha256:abc", "sha512:" + "a" * 64, "sha256:" + "A" * 64, "latest"]
)
def test_digest_must_be_sha256_and_64_lower_hex(bad: str) -> None:
    """image.digest must be sha256:<64 hex>."""
    message = problems(image_digest=bad)
    assert f"image.digest must be sha256:<64 hex>, got {bad!r}" in message
    assert "pulumi config set image.digest sha256:<64 hex> --stack staging" in message


def test_a_pinned_digest_on_an_adopted_endpoint_needs_no_registry_token() -> None:
    """Nothing is built or pulled by this stack, so no GHCR credential is required."""
    cfg = config_with(
        image_digest="sha256:" + "a" * 64, image_registryToken=None, serverless_endpointId="ep1"
    )
    assert cfg.image.digest == "sha256:" + "a" * 64
    assert cfg.image.registry_token is None


def test_a_managed_endpoint_needs_the_registry_token_to_pull() -> None:
    """A pinned digest still needs a GHCR credential when RunPod pulls it for this stack."""
    message = problems(image_digest="sha256:" + "a" * 64, image_registryToken=None)
    assert "image.registryToken is not set, and RunPod pulls the image" in message
    assert "pulumi config set --secret image.registryToken" in message


def test_building_without_a_registry_token_names_the_fix() -> None:
    """Without a digest the image is built and pushed, which needs image.registryToken."""
    message = problems(image_registryToken=None)
    assert "image.registryToken is not set, and the stack builds the image" in message
    assert "pulumi config set --secret image.registryToken" in message
    assert "--stack staging" in message


@pytest.mark.parametrize("bad", ["My_Bucket", "ab", "-outputs", "outputs-", "a" * 64])
def test_bucket_name_must_follow_r2_rules(bad: str) -> None:
    """bucket.name: 3-63 of a-z 0-9 -, starting and ending alphanumeric."""
    message = problems(bucket_name=bad)
    assert "bucket.name must be 3-63 of a-z 0-9 -" in message
    assert f"got {bad!r}" in message
    assert "--stack staging" in message


def test_derived_bucket_name_that_breaks_rules_is_reported() -> None:
    """A stack name that cannot form a bucket name asks for bucket.name."""
    message = problems(stack="Prod_EU")
    assert "bucket.name derived name 'comfyui-runpod-Prod_EU' breaks R2 rules" in message
    assert "pulumi config set bucket.name <name> --stack Prod_EU" in message


def test_production_sending_traffic_to_comfyui_needs_scenario_credentials() -> None:
    """The rollout plan keeps Scenario as the emergency fallback in production."""
    message = problems(
        stack="prod",
        image_digest="sha256:" + "b" * 64,
        rollout_provider="comfyui",
        rollout_comfyuiPercent="10",
        app_runpodApiKey="k",
    )
    assert "app.scenarioApiKey is not set, but production sends traffic to ComfyUI" in message
    assert "pulumi config set --secret app.scenarioApiKey <value> --stack prod" in message
    assert "pulumi config set --secret app.scenarioSecretApiKey <value> --stack prod" in message


def test_production_with_scenario_credentials_may_send_traffic_to_comfyui() -> None:
    """With both Scenario secrets set, production may canary ComfyUI."""
    cfg = config_with(
        "prod",
        image_digest="sha256:" + "b" * 64,
        rollout_provider="comfyui",
        rollout_comfyuiPercent="10",
        app_runpodApiKey="k",
        app_scenarioApiKey="s",
        app_scenarioSecretApiKey="t",
    )
    assert cfg.is_production
    assert cfg.app.environment == "production"


def test_staging_may_send_traffic_to_comfyui_without_scenario() -> None:
    """Only production must keep the Scenario fallback configured."""
    cfg = config_with(rollout_provider="comfyui", rollout_comfyuiPercent="100", runpod__apiKey="k")
    assert cfg.app.scenario_api_key is None
    assert cfg.app.runpod_api_key is not None


def test_comfyui_traffic_without_any_runpod_key_is_rejected() -> None:
    """The app cannot call RunPod without RUNPOD_API_KEY."""
    message = problems(rollout_provider="comfyui", rollout_comfyuiPercent="5")
    assert "the app sends traffic to ComfyUI but has no RunPod key" in message
    assert "pulumi config set --secret runpod:apiKey <key> --stack staging" in message


def test_required_keys_missing_are_all_reported_at_once() -> None:
    """Every missing required key is listed in one error."""
    with pytest.raises(ConfigError) as caught:
        parse({}, stack="staging")
    message = str(caught.value)
    for key in ("cloudflare.accountId", "image.owner", "app.repository"):
        assert f"{key} is not set: pulumi config set {key} <" in message
    for key in ("cloudflare.apiToken", "app.githubToken"):
        assert f"{key} is not set: pulumi config set --secret {key} <value>" in message
    assert len(caught.value.problems) >= 5


def test_secret_values_never_appear_in_messages() -> None:
    """A bad config run never echoes a secret."""
    message = problems(cloudflare_apiToken="super-secret-token", image_digest="bad")
    assert "super-secret-token" not in message


def test_secrets_are_outputs_marked_secret() -> None:
    """Secret keys become pulumi Outputs, never plain strings on the config object."""
    cfg = config_with()
    assert not isinstance(cfg.cloudflare.api_token, str)
    assert "fake-cloudflare-token" not in repr(cfg)


def test_unknown_key_is_reported_as_a_typo() -> None:
    """A key the program does not read is most likely a typo."""
    message = problems(rollout_percent="10")
    assert "rollout.percent is not a key this program reads" in message
    assert "pulumi config rm rollout.percent --stack staging" in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("bucket_location", "mars", "bucket.location must be empty or apac|eeur"),
        ("bucket_jurisdiction", "us", "bucket.jurisdiction must be one of default|eu|fedramp"),
        ("bucket_prefix", "outputs", "bucket.prefix must be empty or end in '/'"),
        ("bucket_corsOrigins", "assets.example.com", "bucket.corsOrigins has invalid entries"),
        ("bucket_publicBaseUrl", "http://cdn.example.com", "must be an https:// URL"),
        ("bucket_expireDays", "-1", "bucket.expireDays must be 0..3650"),
        ("cloudflare_accountId", "acct", "cloudflare.accountId must be 32 hex characters"),
        ("app_repository", "asset-studio", "app.repository must be <owner>/<name>"),
        ("app_reviewerUserIds", "alice", "app.reviewerUserIds has invalid entries"),
        ("image_owner", "Acme", "image.owner must be a lower-case GHCR owner"),
        ("serverless_scalerType", "CPU", "serverless.scalerType must be one of"),
        ("serverless_flashboot", "ON", "serverless.flashboot must be one of"),
        ("videoPod_enabled", "yes", "videoPod.enabled must be true or false"),
        ("videoPod_volumeGb", "5", "videoPod.volumeGb must be 10..4096"),
    ],
)
def test_other_values_are_checked_with_a_fix(key: str, value: str, expected: str) -> None:
    """Each remaining rule names its key, the bad value and a config command."""
    message = problems(**{key: value})
    assert expected in message
    assert repr(value) in message or value in message
    assert "--stack staging" in message


def test_cors_origins_and_reviewers_are_parsed_from_comma_lists() -> None:
    """Comma-separated keys become tuples."""
    cfg = config_with(
        bucket_corsOrigins="https://a.example.com, http://localhost:5173",
        app_reviewerUserIds="101,202",
    )
    assert cfg.bucket.cors_origins == ("https://a.example.com", "http://localhost:5173")
    assert cfg.app.reviewer_user_ids == (101, 202)


def test_committed_stack_files_hold_no_secret_and_no_unknown_key() -> None:
    """The stack files parse offline; only secrets are left for the user to set."""
    for stack in ("staging", "prod"):
        values, secure = stack_file_values(ROOT, stack)
        assert not secure
        with pytest.raises(ConfigError) as caught:
            parse(values, stack=stack)
        for problem in caught.value.problems:
            assert "--secret" in problem, problem


def test_offline_check_accepts_a_stack_whose_secrets_are_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m components.config check` counts encrypted values as set."""
    stack_file = {
        "config": {
            f"comfyui-runpod:{key}": ({"secure": "v1:abc"} if "Token" in key else value)
            for key, value in MINIMAL.items()
        }
    }
    (tmp_path / "Pulumi.staging.yaml").write_text(yaml.safe_dump(stack_file), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert config_main(["check", "--stack", "staging"]) == 0
    assert "configuration is valid" in capsys.readouterr().out


def test_offline_check_fails_with_the_fix_when_a_secret_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing secret is reported with its `pulumi config set --secret` command."""
    values = {k: v for k, v in MINIMAL.items() if k != "app.githubToken"}
    stack_file = {"config": {f"comfyui-runpod:{k}": v for k, v in values.items()}}
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(stack_file), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert config_main(["check", "--stack", "prod"]) == 1
    assert "pulumi config set --secret app.githubToken <value> --stack prod" in (
        capsys.readouterr().err
    )
