"""The whole program, once per committed stack file, under Pulumi mocks.

Each run loads ``Pulumi.yaml`` defaults plus ``Pulumi.<stack>.yaml`` (fake values for every
secret, listed as secret), runs ``__main__.py`` and asserts the invariants the design
promises: bucket-scoped item-level tokens, secret credentials, a digest-pinned image,
explicit providers, and the designed differences between staging and prod. The rollback
test runs prod twice and proves ``rollout.provider=scenario`` changes only the flag.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from components.storage import bucket_resource
from tests.fakes.pulumi_mocks import (
    IMAGE_TYPE,
    ITEM_LEVEL_GROUP_IDS,
    RecordingMocks,
    Registered,
    mocked,
    run_main,
    settle,
)
from tests.fakes.stack_values import ROOT, fake_secret, stack_file, stack_values

STACKS = ("staging", "prod")
TOKEN = "cloudflare:index/accountToken:AccountToken"
BUCKET = "cloudflare:index/r2Bucket:R2Bucket"
KV = "cloudflare:index/workersKv:WorkersKv"
GH_SECRET = "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret"
GH_VARIABLE = "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable"
IMAGE = IMAGE_TYPE
ENDPOINT = "pulumi-python:dynamic/runpod:Endpoint"
REGISTRY = "pulumi-python:dynamic/runpod:Registry"
TEMPLATE = "pulumi-python:dynamic/runpod:Template"
VOLUME = "pulumi-python:dynamic/runpod:NetworkVolume"
PINNED = re.compile(r"ghcr\.io/[a-z0-9-]+/[a-z0-9-]+@sha256:[0-9a-f]{64}")
SECRET_EXPORTS = ("appR2AccessKeyId", "appR2SecretAccessKey")


@dataclass
class Deployment:
    """What one program run registered and exported."""

    mocks: RecordingMocks
    exports: dict[str, tuple[Any, bool]]

    def one(self, typ: str) -> Registered:
        return self.mocks.one(typ)

    def by_name(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r.type, r.name): r.inputs for r in self.mocks.resources}


def deploy(stack: str, overrides: Mapping[str, str] | None = None) -> Deployment:
    """Run ``__main__.py`` for ``stack`` with its committed values (plus ``overrides``)."""
    config, secret_keys = stack_values(stack, overrides)
    with mocked(stack=stack, config=config, secret_keys=secret_keys) as mocks:
        exports = run_main(mocks)
        return Deployment(mocks, {name: settle(value) for name, value in exports.items()})


@pytest.fixture(scope="module")
def deployments() -> dict[str, Deployment]:
    """One run per committed stack file."""
    return {stack: deploy(stack) for stack in STACKS}


@pytest.mark.parametrize("stack", STACKS)
def test_both_tokens_reference_exactly_this_bucket(
    deployments: dict[str, Deployment], stack: str
) -> None:
    """Each token has one policy and its only resource is this stack's bucket."""
    deployment = deployments[stack]
    bucket = deployment.one(BUCKET).inputs
    expected = {bucket_resource(bucket["accountId"], bucket["jurisdiction"], bucket["name"]): "*"}
    registered = deployment.mocks.of_type(TOKEN)
    assert sorted(r.name for r in registered) == ["outputs-app-token", "outputs-worker-token"]
    for token in registered:
        (policy,) = token.inputs["policies"]
        assert policy["effect"] == "allow"
        assert json.loads(policy["resources"]) == expected


@pytest.mark.parametrize("stack", STACKS)
def test_tokens_use_item_level_permission_groups_only(
    deployments: dict[str, Deployment], stack: str
) -> None:
    """No account-wide R2 or other permission sneaks into a token."""
    for token in deployments[stack].mocks.of_type(TOKEN):
        ids = {g["id"] for g in token.inputs["policies"][0]["permissionGroups"]}
        assert ids <= ITEM_LEVEL_GROUP_IDS, token.name
        assert ("write" in str(ids)) == ("worker" in token.name)


@pytest.mark.parametrize("stack", STACKS)
def test_every_credential_is_secret(deployments: dict[str, Deployment], stack: str) -> None:
    """Provider tokens, registry password, GitHub secrets and credential exports are secret."""
    deployment = deployments[stack]
    for name in SECRET_EXPORTS:
        value, is_secret = deployment.exports[name]
        assert is_secret, name
        assert value
    for resource in deployment.mocks.of_type(GH_SECRET):
        assert "value" in resource.secret_paths, resource.inputs["secretName"]
    cloudflare = deployment.one("pulumi:providers:cloudflare")
    assert "apiToken" in cloudflare.secret_paths
    assert "token" in deployment.one("pulumi:providers:github").secret_paths
    for image in deployment.mocks.of_type(IMAGE):
        assert "registries" in image.secret_paths
    for name, (value, is_secret) in deployment.exports.items():
        if name not in SECRET_EXPORTS:
            assert "fake-" not in str(value), f"{name} exports a secret in plaintext"
            assert not is_secret, name


@pytest.mark.parametrize("stack", STACKS)
def test_image_reference_is_pinned_by_digest(
    deployments: dict[str, Deployment], stack: str
) -> None:
    """What RunPod and operators get is repository@sha256, never a tag."""
    reference, _ = deployments[stack].exports["imageRef"]
    assert PINNED.fullmatch(reference), reference


@pytest.mark.parametrize("stack", STACKS)
def test_every_cloud_resource_uses_an_explicit_provider(
    deployments: dict[str, Deployment], stack: str
) -> None:
    """Cloudflare and GitHub resources and lookups use the providers built from config."""
    deployment = deployments[stack]
    for resource in deployment.mocks.resources:
        package = resource.type.split(":")[0]
        if package in ("cloudflare", "github"):
            assert resource.provider, resource.name
            assert f"pulumi:providers:{package}::{package}::" in resource.provider, resource.name
    for _, _, provider in deployment.mocks.calls:
        assert provider
        assert "pulumi:providers:cloudflare::cloudflare::" in provider


def test_staging_builds_and_prod_promotes_a_pinned_digest(
    deployments: dict[str, Deployment],
) -> None:
    """Staging builds the image; prod builds nothing and runs the digest it pins."""
    staging, prod = deployments["staging"], deployments["prod"]
    (built,) = staging.mocks.of_type(IMAGE)
    assert built.inputs["platforms"] == ["linux/amd64"]
    assert built.inputs["cacheTo"][0]["registry"]["mode"] == "max"
    assert prod.mocks.of_type(IMAGE) == []
    pinned = stack_file("prod")["image.digest"]
    assert prod.exports["imageRef"][0].endswith(f"@{pinned}")
    assert prod.exports["imageDigest"][0] == pinned


def test_staging_and_prod_differ_as_designed(deployments: dict[str, Deployment]) -> None:
    """Separate buckets, flags and environments; staging canaries 100%, prod walks up."""
    staging, prod = deployments["staging"], deployments["prod"]
    assert staging.exports["bucketName"][0] == "comfyui-runpod-staging"
    assert prod.exports["bucketName"][0] == "comfyui-runpod-prod"
    assert staging.exports["appEnvironment"][0] == "staging"
    assert prod.exports["appEnvironment"][0] == "production"
    staging_flag = json.loads(staging.one(KV).inputs["value"])
    prod_flag = json.loads(prod.one(KV).inputs["value"])
    assert staging_flag["provider"] == "comfyui"
    assert staging_flag["comfyuiPercent"] == 100
    assert prod_flag["provider"] == "comfyui"
    assert 0 < prod_flag["comfyuiPercent"] < 100
    assert (staging_flag["stack"], prod_flag["stack"]) == ("staging", "prod")
    assert int(stack_file("prod")["serverless.workersMin"]) >= 1
    namespace = "cloudflare:index/workersKvNamespace:WorkersKvNamespace"
    assert staging.one(namespace).inputs["title"] == "comfyui-runpod-staging-rollout"
    assert prod.one(namespace).inputs["title"] == "comfyui-runpod-prod-rollout"


@pytest.mark.parametrize("stack", STACKS)
def test_app_and_flag_point_at_the_endpoint_the_stack_manages(
    deployments: dict[str, Deployment], stack: str
) -> None:
    """The serverless endpoint's id reaches the KV flag, the app secret and the outputs."""
    deployment = deployments[stack]
    (endpoint,) = deployment.mocks.of_type("pulumi-python:dynamic/runpod:Endpoint")
    endpoint_id, _ = deployment.exports["comfyuiEndpointId"]
    assert endpoint_id == f"{endpoint.name}-id"
    assert json.loads(deployment.one(KV).inputs["value"])["endpointId"] == endpoint_id
    app_variables = {
        r.inputs["variableName"]: r.inputs["value"] for r in deployment.mocks.of_type(GH_VARIABLE)
    }
    assert app_variables["RUNPOD_COMFYUI_ENDPOINT_ID"] == endpoint_id
    assert endpoint.inputs["image"] == deployment.exports["imageRef"][0]


def test_video_pod_is_declared_where_enabled(deployments: dict[str, Deployment]) -> None:
    """staging enables the WAN 2.2 pod template; prod does not."""
    template = "pulumi-python:dynamic/runpod:Template"
    assert len(deployments["staging"].mocks.of_type(template)) == 1
    assert deployments["prod"].mocks.of_type(template) == []
    assert "videoPodTemplateId" in deployments["staging"].exports
    assert "videoPodTemplateId" not in deployments["prod"].exports


def test_prod_keeps_scenario_credentials_on_the_app() -> None:
    """Production canaries ComfyUI with the Scenario fallback still configured."""
    deployment = deploy("prod")
    names = {r.inputs["secretName"] for r in deployment.mocks.of_type(GH_SECRET)}
    assert {"SCENARIO_API_KEY", "SCENARIO_SECRET_API_KEY", "RUNPOD_API_KEY"} <= names


def test_rollback_by_config_changes_only_the_flag_and_the_provider_variable() -> None:
    """rollout.provider=scenario on prod: same resources, only the KV value and one variable."""
    before = deploy("prod").by_name()
    after_run = deploy("prod", {"rollout.provider": "scenario"})
    after = after_run.by_name()
    assert set(before) == set(after)
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {
        (KV, "rollout-flag"),
        (GH_VARIABLE, "app-image-generation-provider"),
    }
    assert json.loads(after[(KV, "rollout-flag")]["value"])["provider"] == "scenario"
    assert after[(GH_VARIABLE, "app-image-generation-provider")]["value"] == "scenario"
    assert after_run.exports["rolloutFlag"][0] == after[(KV, "rollout-flag")]["value"]


def test_stack_files_hold_no_secrets() -> None:
    """Secrets are set with `pulumi config set --secret`, never committed in a stack file."""
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))["config"]
    secret_names = {name for name, spec in declared.items() if spec.get("secret")}
    for stack in STACKS:
        assert not secret_names & set(stack_file(stack)), stack


@pytest.mark.parametrize("stack", STACKS)
def test_runpod_pulls_with_the_read_only_token_and_never_gets_the_push_token(
    deployments: dict[str, Deployment], stack: str
) -> None:
    """Every RunPod registry credential holds image.pullToken (secret); the push token only
    logs the build in to GHCR."""
    deployment = deployments[stack]
    registries = deployment.mocks.of_type(REGISTRY)
    assert registries
    for registry in registries:
        assert registry.inputs["password"] == fake_secret("image.pullToken"), registry.name
        assert "password" in registry.secret_paths, registry.name
    pushed = [r.inputs["registries"][0]["password"] for r in deployment.mocks.of_type(IMAGE)]
    assert pushed == ([fake_secret("image.registryToken")] if stack == "staging" else [])
    runpod_inputs = [r.inputs for r in deployment.mocks.resources if "dynamic/runpod" in r.type]
    assert fake_secret("image.registryToken") not in json.dumps(runpod_inputs)


def test_both_stacks_wait_until_a_new_image_serves(deployments: dict[str, Deployment]) -> None:
    """`pulumi up` ends when the new release runs on every worker, in prod and staging."""
    for stack in STACKS:
        (rollout,) = deployments[stack].mocks.of_type(
            "pulumi-python:dynamic/runpod:EndpointRollout"
        )
        assert rollout.inputs["timeout_s"] == 900, stack
    assert stack_file("prod")["serverless.waitForRollout"] == "true"


def test_staging_exports_the_video_pod_request_it_documents(
    deployments: dict[str, Deployment],
) -> None:
    """`videoPodRequest` is the POST /v2/pods body: the template, the volume, Jupyter on."""
    request, is_secret = deployments["staging"].exports["videoPodRequest"]
    assert not is_secret
    template = deployments["staging"].one(TEMPLATE)
    assert request["templateId"] == f"{template.name}-id"
    assert request["startJupyter"] is True
    assert template.inputs["start_jupyter"] is True
    (mount,) = request["mounts"]["network"]
    assert mount["volumeId"] == deployments["staging"].exports["videoPodNetworkVolumeId"][0]
    assert request["dataCenterIds"] == ["EU-RO-1"]
    assert "videoPodRequest" not in deployments["prod"].exports


def test_a_configured_network_volume_is_mounted_by_the_endpoint(
    deployments: dict[str, Deployment],
) -> None:
    """serverless.networkVolumeGb declares the volume, attaches it and exports its id."""
    deployment = deploy(
        "prod",
        {"serverless.networkVolumeGb": "120", "serverless.networkVolumeDataCenterId": "EU-RO-1"},
    )
    volume = deployment.one(VOLUME)
    assert (volume.inputs["size_gb"], volume.inputs["data_center_id"]) == (120, "EU-RO-1")
    (endpoint,) = deployment.mocks.of_type(ENDPOINT)
    assert endpoint.inputs["network_volume_ids"] == [f"{volume.name}-id"]
    assert deployment.exports["comfyuiNetworkVolumeId"][0] == f"{volume.name}-id"
    assert deployments["prod"].mocks.of_type(VOLUME) == []
    assert "comfyuiNetworkVolumeId" not in deployments["prod"].exports


def test_a_commit_that_changes_nothing_under_image_builds_nothing_new(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Staging run for two commits of the same image/ tree: identical build inputs, so the
    provider has nothing to build and the endpoint keeps its digest."""
    runs = []
    for sha in ("1" * 40, "2" * 40):
        monkeypatch.setenv("GITHUB_SHA", sha)
        runs.append(deploy("staging"))
    (first,), (second,) = (run.mocks.of_type(IMAGE) for run in runs)
    assert first.inputs == second.inputs
    assert "1" * 40 not in json.dumps(first.inputs)
    assert runs[0].exports["imageRef"] == runs[1].exports["imageRef"]
    endpoints = [run.one(ENDPOINT).inputs for run in runs]
    assert endpoints[0] == endpoints[1]


def test_ci_runs_differ_only_in_the_job_token_which_the_build_does_not_diff_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In CI every run also brings a new GITHUB_TOKEN as GHCR_PUSH_TOKEN. It changes only
    registries[].password, which pulumi-docker-build's Diff ignores (v0.0.22
    provider/internal/image.go compares a registry's address and username): no rebuild."""
    runs = []
    for sha, token in (("1" * 40, "ghs_job_one"), ("2" * 40, "ghs_job_two")):
        monkeypatch.setenv("GITHUB_SHA", sha)
        monkeypatch.setenv("GHCR_PUSH_TOKEN", token)
        runs.append(deploy("staging"))
    first, second = (run.one(IMAGE) for run in runs)
    assert [r["password"] for r in first.inputs["registries"]] == ["ghs_job_one"]
    assert "registries" in first.secret_paths

    def diffed(inputs: dict[str, Any]) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(inputs))
        for registry in copy["registries"]:
            registry.pop("password")
        return copy

    assert diffed(first.inputs) == diffed(second.inputs)
    assert runs[0].one(ENDPOINT).inputs == runs[1].one(ENDPOINT).inputs


def test_prod_builds_nothing(deployments: dict[str, Deployment]) -> None:
    """prod pins a digest: no build resource, no push credential in use."""
    assert deployments["prod"].mocks.of_type(IMAGE) == []
