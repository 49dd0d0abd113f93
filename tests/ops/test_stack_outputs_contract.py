"""ops reads what the real program exports: each stack file's run under Pulumi mocks, seen
the way `pulumi stack output --json` (with and without --show-secrets) would print it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from components import outputs as output_names
from ops.promote import pin_digest
from ops.rollout_state import read_state, rollout_check
from ops.target import FLAG_READS, READS, StackOutputs, resolve_target
from tests.fakes.pulumi_mocks import mocked, run_main, settle
from tests.fakes.stack_values import ROOT, stack_values

STACKS = ("staging", "prod")
pytestmark = pytest.mark.slow  # runs the whole program under mocks once per stack


def stack_output_views(stack: str) -> dict[bool, str]:
    """What `pulumi stack output --json --stack <stack>` prints, without (False) and with
    (True) --show-secrets, from one run of the program."""
    config, secret_keys = stack_values(stack)
    with mocked(stack=stack, config=config, secret_keys=secret_keys) as mocks:
        settled = {name: settle(output) for name, output in run_main(mocks).items()}
    return {
        show: json.dumps(
            {
                name: value if (show or not is_secret) else "[secret]"
                for name, (value, is_secret) in settled.items()
            }
        )
        for show in (False, True)
    }


@pytest.fixture(scope="module")
def outputs() -> dict[tuple[str, bool], StackOutputs]:
    """Both stacks, with and without secrets."""
    found = {}
    for stack in STACKS:
        for show, text in stack_output_views(stack).items():
            found[(stack, show)] = StackOutputs.parse(text)
    return found


def test_the_program_exports_exactly_the_listed_names_and_ops_reads_only_those(
    outputs: dict[tuple[str, bool], StackOutputs],
) -> None:
    """Staging (volume and video pod on) exports every name in components/outputs.py and no
    other; prod the ones every stack exports; every output ops reads is one of them."""
    exported = {stack: set(outputs[(stack, False)].values) for stack in STACKS}
    assert exported["staging"] == set(output_names.ALL)
    assert set(output_names.ALWAYS) <= exported["prod"] <= set(output_names.ALL)
    assert len(set(output_names.ALL)) == len(output_names.ALL)
    assert set(READS.values()) <= set(output_names.ALL)
    flag = outputs[("prod", False)].flag()
    assert flag is not None
    assert set(FLAG_READS.values()) <= set(flag)


@pytest.mark.parametrize("stack", STACKS)
def test_ops_finds_the_endpoint_and_the_flag_in_the_programs_outputs(
    outputs: dict[tuple[str, bool], StackOutputs], stack: str
) -> None:
    """Endpoint id, provider and percent resolve; the flag points at the same endpoint."""
    found = outputs[(stack, False)]
    endpoint = found.get("endpoint_id")
    assert endpoint
    target = resolve_target(
        endpoint_id=None, api_key=None, base_url=None, outputs=found, env={"RUNPOD_API_KEY": "k"}
    )
    assert target.endpoint_id == endpoint
    flag = found.flag()
    assert flag is not None
    assert flag["endpointId"] == endpoint
    assert flag["stack"] == stack
    state, problem = read_state(found, env={})
    check = rollout_check(state, problem, tested_endpoint=endpoint, stack=stack)
    assert check.status == "pass", check.detail
    expected = {"staging": ("comfyui", 100), "prod": ("comfyui", 10)}[stack]
    assert (flag["provider"], flag["comfyuiPercent"]) == expected


@pytest.mark.parametrize("stack", STACKS)
def test_smoke_gets_the_app_read_credentials_only_with_show_secrets(
    outputs: dict[tuple[str, bool], StackOutputs], stack: str
) -> None:
    """The R2 settings come from the outputs; the secret only when --show-secrets was used."""
    hidden = outputs[(stack, False)].r2_env({})
    shown = outputs[(stack, True)].r2_env({})
    assert hidden["R2_BUCKET"] == f"comfyui-runpod-{stack}"
    assert hidden["R2_ENDPOINT"].startswith("https://")
    assert "R2_SECRET_ACCESS_KEY" not in hidden
    assert set(shown) >= {"R2_ENDPOINT", "R2_BUCKET", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY"}


def test_promote_pins_stagings_exported_digest_into_prod(
    outputs: dict[tuple[str, bool], StackOutputs], tmp_path: Path
) -> None:
    """staging's imageDigest output is what `ops pin-digest` writes into Pulumi.prod.yaml."""
    digest = outputs[("staging", False)].get("image_digest")
    assert str(digest).startswith("sha256:")
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copy(ROOT / "Pulumi.prod.yaml", tmp_path / "Pulumi.prod.yaml")
    result = pin_digest(tmp_path / "Pulumi.prod.yaml", str(digest))
    assert result.digest == digest
    assert f"comfyui-runpod:image.digest: {digest}" in (tmp_path / "Pulumi.prod.yaml").read_text()
