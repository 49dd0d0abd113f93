"""StackConfig validation, without the Pulumi runtime: one test per rule, message asserted."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from components.config import (
    KNOWN_MODEL_GROUPS,
    ConfigError,
    parse,
    stack_file_values,
)
from components.config import _main as config_main
from components.runpod import limits
from components.runpod.providers import EndpointProvider
from tests.components.builders import stack_config
from tests.fakes.pulumi_mocks import pulumi_loop
from tests.fakes.stack_values import MINIMAL, ROOT
from tests.provider.support import endpoint_inputs

pytestmark = pytest.mark.usefixtures(pulumi_loop.__name__)


def problems(stack: str = "staging", **changes: str | None) -> str:
    """The ConfigError message for MINIMAL with ``changes``."""
    with pytest.raises(ConfigError) as caught:
        stack_config(stack, **changes)
    return str(caught.value)


def test_minimal_config_takes_the_documented_defaults() -> None:
    """Unset keys fall back to the defaults Pulumi.yaml declares."""
    cfg = stack_config()
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
    cfg = stack_config(rollout_provider="runpod", app_runpodApiKey="k")
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
    ("key", "prop", "value", "declared"),
    [
        ("serverless_gpuCount", "gpu.count", limits.GPU_COUNT.high + 1, "gpu"),
        (
            "serverless_idleTimeout",
            "workers.idleTimeout",
            limits.IDLE_TIMEOUT_S.high + 1,
            "workers",
        ),
        ("serverless_gpuPools", "gpu", "RTX_9090", "gpu"),
        ("serverless_flashboot", "flashboot", "TURBO", "flashboot"),
    ],
)
def test_config_and_the_provider_refuse_the_same_runpod_values(
    key: str, prop: str, value: object, declared: str
) -> None:
    """One definition of each RunPod limit: what the config refuses, `check` refuses too."""
    assert f"{key.replace('_', '.', 1)} " in problems(**{key: str(value)})
    bag = endpoint_inputs()
    if declared == "gpu":
        field = "pools" if prop == "gpu" else "count"
        bag["gpu"] = {**bag["gpu"], field: [value] if field == "pools" else value}
    elif declared == "workers":
        bag["workers"] = {**bag["workers"], "idleTimeout": value}
    else:
        bag[declared] = value
    failures = EndpointProvider().check({}, bag).failures
    assert [f.property for f in failures] == [prop]


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
    cfg = stack_config(
        image_digest="sha256:" + "a" * 64,
        image_registryToken=None,
        image_pullToken=None,
        serverless_endpointId="ep1",
    )
    assert cfg.image.digest == "sha256:" + "a" * 64
    assert cfg.image.registry_token is None
    assert cfg.image.pull_token is None


def test_a_pinned_digest_needs_no_push_token() -> None:
    """Promotion (prod) pins a digest: it pulls with the read-only token and never pushes."""
    cfg = stack_config(image_digest="sha256:" + "a" * 64, image_registryToken=None)
    assert cfg.image.registry_token is None
    assert cfg.image.pull_token is not None


def test_a_managed_endpoint_needs_the_pull_token() -> None:
    """RunPod pulls the image for the endpoint with image.pullToken; its absence names it."""
    message = problems(image_digest="sha256:" + "a" * 64, image_pullToken=None)
    assert "image.pullToken (RunPod's read-only pull token) is not set" in message
    assert "RunPod pulls the image for the serverless endpoint:" in message
    assert (
        "pulumi config set --secret image.pullToken "
        "<GitHub classic token with read:packages only> --stack staging"
    ) in message
    assert "image.registryToken" not in message


def test_the_video_pod_alone_needs_the_pull_token() -> None:
    """An adopted endpoint plus the video pod still has RunPod pull the image."""
    message = problems(
        serverless_endpointId="ep1",
        videoPod_enabled="true",
        videoPod_comfyPassword="long-enough-password",
        image_pullToken=None,
    )
    assert "RunPod pulls the image for the video pod:" in message


def test_building_without_a_registry_token_names_the_fix() -> None:
    """Without a digest the image is built and pushed, which needs image.registryToken."""
    message = problems(image_registryToken=None)
    assert "image.registryToken (the push token) is not set" in message
    assert "the stack builds and pushes the image (no image.digest pinned)" in message
    assert (
        "pulumi config set --secret image.registryToken "
        "<GitHub classic token with write:packages> --stack staging"
    ) in message
    assert "image.pullToken" not in message


def test_pull_token_equal_to_the_push_token_is_rejected() -> None:
    """RunPod must never hold a token that can push: the pull token is a separate one."""
    message = problems(image_registryToken="same-token", image_pullToken="same-token")
    assert "image.pullToken is the same token as image.registryToken" in message
    assert "create a separate token with read:packages only" in message
    assert "pulumi config set --secret image.pullToken" in message
    assert "same-token" not in message


def test_runpod_gets_the_pull_credential_and_its_user() -> None:
    """The pull user defaults to the push user, then the owner; the token is a secret Output."""
    assert stack_config().image.pull_username == "acme"
    assert stack_config(image_registryUsername="pusher").image.pull_username == "pusher"
    cfg = stack_config(image_registryUsername="pusher", image_pullUsername="puller")
    assert cfg.image.pull_username == "puller"
    assert not isinstance(cfg.image.pull_token, str)
    assert "fake-ghcr-pull-token" not in repr(cfg)


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
    cfg = stack_config(
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
    cfg = stack_config(rollout_provider="comfyui", rollout_comfyuiPercent="100", runpod__apiKey="k")
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
    """A rule that rejects a secret names its key in the error but never echoes the value."""
    sentinel = "ghp_SENTINEL_secret_value_0123456789"
    with pytest.raises(ConfigError) as caught:
        stack_config(image_registryToken=sentinel, image_pullToken=f"  {sentinel} ")
    message = str(caught.value)
    assert "image.pullToken is the same token as image.registryToken" in message
    assert "pulumi config set --secret image.pullToken <" in message
    for text in (message, repr(caught.value), *caught.value.problems):
        assert sentinel not in text


def test_secrets_are_outputs_marked_secret() -> None:
    """Secret keys become pulumi Outputs, never plain strings on the config object."""
    cfg = stack_config()
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
        ("bucket_jurisdiction", "apac", "bucket.jurisdiction must be one of default|eu|fedramp|us"),
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
    cfg = stack_config(
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
    (tmp_path / "Pulumi.yaml").write_text("name: comfyui-runpod\n", encoding="utf-8")
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
    (tmp_path / "Pulumi.yaml").write_text("name: comfyui-runpod\n", encoding="utf-8")
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(stack_file), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert config_main(["check", "--stack", "prod"]) == 1
    assert "pulumi config set --secret app.githubToken <value> --stack prod" in (
        capsys.readouterr().err
    )


# --------------------------------------------------------------------------- RunPod keys


def test_runpod_keys_take_their_documented_defaults() -> None:
    """No volume, wait for rollouts (900 s), Jupyter on, model groups as typed tuples."""
    cfg = stack_config()
    assert cfg.serverless.network_volume_gb is None
    assert cfg.serverless.network_volume_data_center_id is None
    assert cfg.serverless.wait_for_rollout is True
    assert cfg.serverless.rollout_timeout_seconds == 900
    assert cfg.video_pod.jupyter is True
    assert cfg.serverless.model_groups == ("flux_dev_fp8", "background_removal")
    assert cfg.video_pod.model_groups == ("wan22_t2v", "wan22_t2v_fast")
    assert (cfg.serverless.adopt_existing, cfg.video_pod.adopt_existing) == (False, False)


def test_runpod_adopt_existing_reaches_both_runpod_components() -> None:
    """One key, `runpod.adoptExisting`, decides adoption for every RunPod object."""
    cfg = stack_config(**{"runpod.adoptExisting": "true"})
    assert (cfg.serverless.adopt_existing, cfg.video_pod.adopt_existing) == (True, True)


def test_network_volume_size_and_data_center_are_parsed_together() -> None:
    """A size with its data center becomes the volume the endpoint mounts."""
    cfg = stack_config(
        serverless_networkVolumeGb="150",
        serverless_networkVolumeDataCenterId="EU-RO-1",
        serverless_dataCenterIds="EU-RO-1",
    )
    assert cfg.serverless.network_volume_gb == 150
    assert cfg.serverless.network_volume_data_center_id == "EU-RO-1"


@pytest.mark.parametrize("bad", ["5", "4097", "-1", "lots"])
def test_network_volume_size_must_be_0_or_10_to_4096(bad: str) -> None:
    """serverless.networkVolumeGb: 0 for none, else RunPod's 10..4096 GB."""
    message = problems(
        serverless_networkVolumeGb=bad, serverless_networkVolumeDataCenterId="EU-RO-1"
    )
    assert f"serverless.networkVolumeGb must be 0 (no volume) or 10..4096 GB, got {bad!r}" in (
        message
    )
    assert "pulumi config set serverless.networkVolumeGb <0|10..4096> --stack staging" in message


def test_network_volume_size_needs_a_data_center() -> None:
    """A volume lives in one data center, so a size without one is rejected with the fix."""
    message = problems(serverless_networkVolumeGb="100")
    assert (
        "serverless.networkVolumeDataCenterId is required when serverless.networkVolumeGb is 100"
    ) in message
    assert (
        "pulumi config set serverless.networkVolumeDataCenterId "
        "<data center id, e.g. EU-RO-1> --stack staging"
    ) in message


def test_network_volume_data_center_without_a_size_is_reported() -> None:
    """A data center alone would silently create nothing; the message offers both fixes."""
    message = problems(serverless_networkVolumeDataCenterId="EU-RO-1")
    assert (
        "serverless.networkVolumeDataCenterId is 'EU-RO-1' but serverless.networkVolumeGb is 0"
        in (message)
    )
    assert "pulumi config set serverless.networkVolumeGb <10..4096> --stack staging" in message
    assert "pulumi config rm serverless.networkVolumeDataCenterId --stack staging" in message


def test_data_center_list_must_include_the_volumes_data_center() -> None:
    """Workers restricted elsewhere could never mount the volume."""
    message = problems(
        serverless_networkVolumeGb="100",
        serverless_networkVolumeDataCenterId="EU-RO-1",
        serverless_dataCenterIds="US-TX-3",
    )
    assert "serverless.dataCenterIds ['US-TX-3'] must include" in message
    assert "serverless.networkVolumeDataCenterId (EU-RO-1)" in message
    assert "pulumi config set serverless.dataCenterIds EU-RO-1 --stack staging" in message


def test_wait_for_rollout_must_be_a_boolean() -> None:
    """serverless.waitForRollout is true or false."""
    message = problems(serverless_waitForRollout="sometimes")
    assert "serverless.waitForRollout must be true or false, got 'sometimes'" in message
    assert "pulumi config set serverless.waitForRollout <true|false> --stack staging" in message
    assert stack_config(serverless_waitForRollout="false").serverless.wait_for_rollout is False


@pytest.mark.parametrize("bad", ["59", "7201"])
def test_rollout_timeout_must_be_60_to_7200_seconds(bad: str) -> None:
    """serverless.rolloutTimeoutSeconds stays within what the endpoint provider accepts."""
    message = problems(serverless_rolloutTimeoutSeconds=bad)
    assert f"serverless.rolloutTimeoutSeconds must be 60..7200, got {bad}" in message
    assert "pulumi config set serverless.rolloutTimeoutSeconds <60..7200> --stack staging" in (
        message
    )


def test_video_pod_jupyter_must_be_a_boolean() -> None:
    """videoPod.jupyter is true or false; false turns JupyterLab off."""
    message = problems(videoPod_jupyter="maybe")
    assert "videoPod.jupyter must be true or false, got 'maybe'" in message
    assert "pulumi config set videoPod.jupyter <true|false> --stack staging" in message
    assert stack_config(videoPod_jupyter="false").video_pod.jupyter is False


@pytest.mark.parametrize(
    ("key", "default"),
    [
        ("serverless.modelGroups", "flux_dev_fp8,background_removal"),
        ("videoPod.modelGroups", "wan22_t2v,wan22_t2v_fast"),
    ],
)
def test_model_groups_must_be_groups_the_manifest_defines(key: str, default: str) -> None:
    """An unknown group would fail every worker's boot; config names it and the known ones."""
    message = problems(**{key.replace(".", "_"): "flux_dev_fp8,wan_9000"})
    assert f"{key} names unknown model groups ['wan_9000']" in message
    assert "image/models.toml defines wan22_t2v, wan22_t2v_fast, turbodiffusion" in message
    assert f"pulumi config set {key} {default} --stack staging" in message


def test_model_groups_must_not_be_empty() -> None:
    """A worker with no model group has nothing to run."""
    message = problems(serverless_modelGroups=" , ")
    assert "serverless.modelGroups must name at least one model group" in message
    assert (
        "pulumi config set serverless.modelGroups flux_dev_fp8,background_removal --stack staging"
    ) in message


def test_model_groups_are_a_typed_tuple() -> None:
    """Comma lists become tuples of group names, blanks dropped."""
    cfg = stack_config(serverless_modelGroups="steadydancer, turbodiffusion,")
    assert cfg.serverless.model_groups == ("steadydancer", "turbodiffusion")


def test_known_model_groups_match_the_image_manifest() -> None:
    """KNOWN_MODEL_GROUPS (used to validate offline) equals the groups image/models.toml defines."""
    manifest = tomllib.loads((ROOT / "image" / "models.toml").read_text(encoding="utf-8"))
    groups = {group for model in manifest["model"] for group in model["groups"]}
    assert set(KNOWN_MODEL_GROUPS) == groups
    assert len(KNOWN_MODEL_GROUPS) == len(groups)


def test_unknown_jurisdiction_is_refused_with_the_fix() -> None:
    """A jurisdiction R2 does not have fails validation, naming the accepted ones."""
    message = problems(bucket_jurisdiction="ch")
    assert "bucket.jurisdiction must be one of default|eu|fedramp|us, got 'ch'" in message
    assert (
        "pulumi config set bucket.jurisdiction <default|eu|fedramp|us> --stack staging" in message
    )


def test_us_jurisdiction_is_accepted() -> None:
    """R2's `us` jurisdiction (2026-08) is a valid choice."""
    assert stack_config(bucket_jurisdiction="us").bucket.jurisdiction == "us"


def test_data_is_protected_unless_deletion_is_allowed() -> None:
    """data.allowDeletion defaults to false; only an explicit true allows deletion."""
    assert stack_config().data.allow_deletion is False
    assert stack_config(data_allowDeletion="true").data.allow_deletion is True
    message = problems(data_allowDeletion="yes")
    assert "data.allowDeletion must be true or false, got 'yes'" in message
    assert "pulumi config set data.allowDeletion <true|false> --stack staging" in message


def test_bake_model_groups_are_known_groups_or_none() -> None:
    """image.bakeModelGroups is empty by default and names only manifest groups."""
    assert stack_config().image.bake_model_groups == ()
    cfg = stack_config(image_bakeModelGroups="flux_dev_fp8, background_removal")
    assert cfg.image.bake_model_groups == ("flux_dev_fp8", "background_removal")
    message = problems(image_bakeModelGroups="flux_dev_fp8,sdxl")
    assert "image.bakeModelGroups names unknown model groups ['sdxl']" in message
    assert "pulumi config set image.bakeModelGroups" in message


def test_baking_is_refused_where_a_digest_pins_the_image() -> None:
    """A pinned digest builds nothing, so asking to bake is a mistake worth stopping."""
    message = problems(image_digest="sha256:" + "a" * 64, image_bakeModelGroups="flux_dev_fp8")
    assert "image.bakeModelGroups (flux_dev_fp8) has no effect" in message
    assert "pulumi config rm image.bakeModelGroups --stack staging" in message


def test_revision_is_left_to_the_build_unless_set() -> None:
    """No GITHUB_SHA fallback: an unset revision means "hash the build context"."""
    values = dict(MINIMAL)
    assert parse(values, stack="staging", env={"GITHUB_SHA": "abc"}).image.revision is None
    values["image.revision"] = "v1.2.3"
    assert parse(values, stack="staging", env={}).image.revision == "v1.2.3"


def test_ci_push_token_from_the_environment_replaces_the_registry_token() -> None:
    """GHCR_PUSH_TOKEN (the workflow's GITHUB_TOKEN) satisfies and wins over the key."""
    values = {k: v for k, v in MINIMAL.items() if k != "image.registryToken"}
    with pytest.raises(ConfigError, match="GHCR_PUSH_TOKEN"):
        parse(values, stack="staging", env={})
    cfg = parse(values, stack="staging", env={"GHCR_PUSH_TOKEN": "ghs_ci"})
    assert cfg.image.registry_token is not None
    assert "ghs_ci" not in repr(cfg)


def test_a_tag_leaves_room_for_its_build_cache_tag() -> None:
    """The cache tag `<tag>-buildcache` must stay within Docker's 128 characters."""
    assert stack_config(image_tag="t" * 117).image.tag == "t" * 117
    assert "image.tag must be a docker tag" in problems(image_tag="t" * 118)


def test_the_video_pod_needs_a_comfyui_password() -> None:
    """An enabled video pod without videoPod.comfyPassword fails before any resource, naming
    the command; a short one too; a disabled pod needs none."""
    message = problems(videoPod_enabled="true")
    assert "videoPod.comfyPassword is not set (required when videoPod.enabled is true" in message
    assert "pulumi config set --secret videoPod.comfyPassword <password> --stack staging" in message
    short = problems(videoPod_enabled="true", videoPod_comfyPassword="short")
    assert "videoPod.comfyPassword must have at least 12 characters" in short
    cfg = stack_config(videoPod_enabled="true", videoPod_comfyPassword="long-enough-password")
    assert cfg.video_pod.comfy_password is not None
    assert stack_config().video_pod.comfy_password is None


def test_excluded_gpu_types_are_a_typed_tuple_empty_by_default() -> None:
    """serverless.excludedGpuTypes: RunPod GPU type ids, spaces kept, none by default."""
    assert stack_config().serverless.excluded_gpu_types == ()
    cfg = stack_config(serverless_excludedGpuTypes="NVIDIA L4, NVIDIA GeForce RTX 4090")
    assert cfg.serverless.excluded_gpu_types == ("NVIDIA L4", "NVIDIA GeForce RTX 4090")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("NVIDIA L4,-NVIDIA L40", "has invalid entries ['-NVIDIA L40']"),
        ("NVIDIA L4,NVIDIA L4", "names ['NVIDIA L4'] more than once"),
    ],
)
def test_excluded_gpu_types_must_be_type_ids_named_once(value: str, fragment: str) -> None:
    """A malformed or repeated type is refused before anything is planned, with the fix."""
    message = problems(serverless_excludedGpuTypes=value)
    assert f"serverless.excludedGpuTypes {fragment}" in message
    assert "pulumi config set serverless.excludedGpuTypes 'NVIDIA L4,NVIDIA RTX A4000'" in message
