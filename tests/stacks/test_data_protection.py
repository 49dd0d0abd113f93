"""Data is never deleted or replaced as a side effect: the whole program under mocks.

What holds data (the R2 bucket with every generated asset, the RunPod network volumes with
models and pod work) is registered with ``protect=True``; the engine then refuses any plan
that deletes or replaces it. ``data.allowDeletion`` is the one switch that lifts it, and
nothing else in the stack is protected (so credentials, templates and endpoints stay
replaceable).
"""

from __future__ import annotations

import pytest

from tests.stacks.test_stacks import BUCKET, VOLUME, deploy

WITH_SERVERLESS_VOLUME = {
    "serverless.networkVolumeGb": "120",
    "serverless.networkVolumeDataCenterId": "EU-RO-1",
}


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_bucket_and_every_network_volume_are_protected(stack: str) -> None:
    """Bucket, serverless models volume and video pod volume: protected by default."""
    deployment = deploy(stack, {**WITH_SERVERLESS_VOLUME, "videoPod.enabled": "true"})
    bucket = deployment.one(BUCKET)
    volumes = deployment.mocks.of_type(VOLUME)
    assert sorted(volume.name for volume in volumes) == ["comfyui-models", "video-volume"]
    for resource in (bucket, *volumes):
        assert resource.options.protect, resource.name
    protected = {r.name for r in deployment.mocks.resources if r.options.protect}
    assert protected == {bucket.name, *(volume.name for volume in volumes)}


def test_a_jurisdiction_change_plans_a_replacement_that_protection_refuses() -> None:
    """R2 cannot move a bucket: jurisdiction forces replacement, and protect refuses it."""
    bucket = deploy("prod", {"bucket.jurisdiction": "eu"}).one(BUCKET)
    assert bucket.inputs["jurisdiction"] == "eu"
    assert "jurisdiction" in bucket.options.replace_on_changes
    assert bucket.options.protect
    # Once deletion is allowed, a replacement leaves the old bucket and its objects in place.
    assert bucket.options.retain_on_delete


def test_allow_deletion_is_the_one_switch_that_unprotects_data() -> None:
    """data.allowDeletion=true: nothing in the stack is protected any more."""
    deployment = deploy(
        "staging",
        {**WITH_SERVERLESS_VOLUME, "videoPod.enabled": "true", "data.allowDeletion": "true"},
    )
    assert len(deployment.mocks.of_type(VOLUME)) == 2
    assert [r.name for r in deployment.mocks.resources if r.options.protect] == []
    # Volumes are really deleted then (they bill while they exist); the bucket only leaves
    # the stack, since R2 deletes only empty buckets.
    retained = [r.name for r in deployment.mocks.resources if r.options.retain_on_delete]
    assert retained == [deployment.one(BUCKET).name]
