"""OutputBucket under Pulumi mocks: bucket scoping, lifecycle, CORS, derived credentials."""

from __future__ import annotations

import hashlib
import json

import pytest

from components.storage import (
    ITEM_READ,
    OutputBucket,
    bucket_resource,
    policy_resources,
    s3_secret,
)
from tests.components.builders import stack_config
from tests.fakes.pulumi_mocks import (
    ITEM_LEVEL_GROUP_IDS,
    RecordingMocks,
    mocked,
    pulumi_loop,
    run,
    settle,
)
from tests.fakes.stack_values import ACCOUNT_ID

pytestmark = pytest.mark.usefixtures(pulumi_loop.__name__)

TOKEN = "cloudflare:index/accountToken:AccountToken"


def build(mocks: RecordingMocks, **values: str) -> OutputBucket:
    """Run an OutputBucket for MINIMAL + ``values`` (``bucket_x`` -> ``bucket.x``)."""
    cfg = stack_config(**values)
    built: list[OutputBucket] = []
    run(lambda: built.append(OutputBucket("outputs", account_id=ACCOUNT_ID, settings=cfg.bucket)))
    return built[0]


def tokens(mocks: RecordingMocks) -> dict[str, dict[str, object]]:
    """Token registrations by role (``worker``/``app``)."""
    return {r.name.split("-")[1]: r.inputs for r in mocks.of_type(TOKEN)}


def test_tokens_are_scoped_to_this_bucket_only() -> None:
    """Both tokens carry one allow policy whose only resource is this bucket."""
    with mocked() as mocks:
        build(mocks)
        expected = {bucket_resource(ACCOUNT_ID, "default", "comfyui-runpod-staging"): "*"}
        for role, inputs in tokens(mocks).items():
            policies = inputs["policies"]
            assert isinstance(policies, list)
            assert len(policies) == 1, role
            assert policies[0]["effect"] == "allow"
            assert json.loads(policies[0]["resources"]) == expected


def test_worker_may_read_and_write_objects_and_app_may_only_read() -> None:
    """Item-level groups only: worker read+write, app read."""
    with mocked() as mocks:
        build(mocks)
        groups = {
            role: {g["id"] for g in inputs["policies"][0]["permissionGroups"]}  # type: ignore[index]
            for role, inputs in tokens(mocks).items()
        }
        assert groups == {
            "worker": {"pg-r2-item-read", "pg-r2-item-write"},
            "app": {"pg-r2-item-read"},
        }
        assert set().union(*groups.values()) <= ITEM_LEVEL_GROUP_IDS


def test_policy_resources_are_the_compact_json_the_api_stores() -> None:
    """No spaces after separators: the provider compares the string with the API's form."""
    with mocked() as mocks:
        build(mocks)
        expected = (
            f'{{"com.cloudflare.edge.r2.bucket.{ACCOUNT_ID}_default_comfyui-runpod-staging":"*"}}'
        )
        for role, inputs in tokens(mocks).items():
            assert inputs["policies"][0]["resources"] == expected, role  # type: ignore[index]
    assert policy_resources(ACCOUNT_ID, "eu", "b") == (
        f'{{"com.cloudflare.edge.r2.bucket.{ACCOUNT_ID}_eu_b":"*"}}'
    )


def test_permission_groups_are_matched_by_name_from_one_unfiltered_listing() -> None:
    """Ids come from Cloudflare's list, never hard-coded; the name filter (whose URL
    encoding is the caller's problem) is not used: one listing, names matched here."""
    with mocked() as mocks:
        build(mocks)
        assert len(mocks.calls) == 1
        ((_, args, _),) = mocks.calls
        assert args["accountId"] == ACCOUNT_ID
        assert args.get("name") is None
        assert args.get("scope") is None


def test_missing_permission_group_fails_listing_the_groups_found() -> None:
    """If Cloudflare renames a group, the program stops and shows what it did find."""
    with mocked() as mocks:
        mocks.permission_groups = {
            ITEM_READ: "pg-r2-item-read",
            "Workers R2 Storage Bucket Item Writer": "pg-renamed",
            "Workers KV Storage Write": "pg-kv-write",
        }
        with pytest.raises(Exception, match="Workers R2 Storage Bucket Item Write'") as caught:
            build(mocks)
    message = str(caught.value)
    assert "Workers R2 Storage Bucket Item Writer" in message
    assert "found 0 among 3 groups" in message


def test_the_bucket_is_protected_and_a_jurisdiction_change_replaces_it() -> None:
    """protect refuses deletion and replacement; a jurisdiction change plans a replacement
    (R2 cannot move a bucket), which the protection then refuses before anything runs."""
    with mocked() as mocks:
        build(mocks)
        bucket = mocks.one("cloudflare:index/r2Bucket:R2Bucket")
        assert bucket.options.protect
        assert bucket.options.replace_on_changes == ("jurisdiction",)
        # Only the data is protected: tokens, lifecycle and CORS stay replaceable.
        others = [r for r in mocks.resources if r.type != bucket.type]
        assert others
        assert not any(r.options.protect for r in others)


def test_data_allow_deletion_lifts_the_bucket_protection() -> None:
    """data.allowDeletion=true is the one switch that lets Pulumi delete the bucket."""
    with mocked() as mocks:
        build(mocks, data_allowDeletion="true")
        bucket = mocks.one("cloudflare:index/r2Bucket:R2Bucket")
        assert not bucket.options.protect
        assert bucket.options.replace_on_changes == ("jurisdiction",)


def test_s3_credentials_derive_from_the_tokens_and_are_secret() -> None:
    """Access key id = token id, secret = SHA-256 hex of the token value; all secret."""
    with mocked() as mocks:
        bucket = build(mocks)
        for role in ("worker", "app"):
            token_name = f"outputs-{role}-token"
            token_id = hashlib.sha256(token_name.encode()).hexdigest()[:32]
            key_id, key_id_secret = settle(getattr(bucket, f"{role}_access_key_id"))
            secret, secret_secret = settle(getattr(bucket, f"{role}_secret_access_key"))
            assert key_id == token_id
            assert secret == s3_secret(f"fake-token-value-{token_name}")
            assert len(secret) == 64
            assert key_id_secret
            assert secret_secret


def test_abort_multipart_rule_always_exists_and_expiry_only_when_configured() -> None:
    """Incomplete uploads are always cleaned up; objects expire only when asked."""
    with mocked() as mocks:
        build(mocks)
        rules = mocks.one("cloudflare:index/r2BucketLifecycle:R2BucketLifecycle").inputs["rules"]
        assert [r["id"] for r in rules] == ["abort-incomplete-multipart"]
        condition = rules[0]["abortMultipartUploadsTransition"]["condition"]
        assert condition == {"type": "Age", "maxAge": 86_400}
        assert rules[0]["conditions"] == {"prefix": ""}
    with mocked() as mocks:
        build(mocks, bucket_expireDays="30", bucket_prefix="gen/")
        rules = mocks.one("cloudflare:index/r2BucketLifecycle:R2BucketLifecycle").inputs["rules"]
        expire = next(r for r in rules if r["id"] == "expire-generated")
        assert expire["conditions"] == {"prefix": "gen/"}
        assert expire["deleteObjectsTransition"]["condition"] == {
            "type": "Age",
            "maxAge": 30 * 86_400,
        }


def test_cors_allows_only_reads_from_the_app_origins() -> None:
    """CORS exists only for configured origins, and only for GET/HEAD."""
    with mocked() as mocks:
        build(mocks)
        assert mocks.of_type("cloudflare:index/r2BucketCors:R2BucketCors") == []
    with mocked() as mocks:
        build(mocks, bucket_corsOrigins="https://assets.example.com")
        rule = mocks.one("cloudflare:index/r2BucketCors:R2BucketCors").inputs["rules"][0]
        assert rule["allowed"]["origins"] == ["https://assets.example.com"]
        assert sorted(rule["allowed"]["methods"]) == ["GET", "HEAD"]


def test_eu_jurisdiction_moves_bucket_endpoint_and_token_scope() -> None:
    """The S3 endpoint and the token resource follow the jurisdiction."""
    with mocked() as mocks:
        bucket = build(mocks, bucket_jurisdiction="eu", bucket_location="weur")
        endpoint, _ = settle(bucket.s3_endpoint)
        assert endpoint == f"https://{ACCOUNT_ID}.eu.r2.cloudflarestorage.com"
        registered = mocks.one("cloudflare:index/r2Bucket:R2Bucket").inputs
        assert registered["jurisdiction"] == "eu"
        assert registered["location"] == "weur"
        resources = json.loads(tokens(mocks)["app"]["policies"][0]["resources"])  # type: ignore[index]
        assert list(resources) == [
            f"com.cloudflare.edge.r2.bucket.{ACCOUNT_ID}_eu_comfyui-runpod-staging"
        ]


def test_public_base_url_is_exposed_only_when_configured() -> None:
    """Without a public URL, consumers presign; with one, it is passed through."""
    with mocked() as mocks:
        assert settle(build(mocks).public_base_url)[0] == ""
    with mocked() as mocks:
        bucket = build(mocks, bucket_publicBaseUrl="https://cdn.example.com/")
        assert settle(bucket.public_base_url)[0] == "https://cdn.example.com"


def test_us_jurisdiction_uses_the_us_endpoint() -> None:
    """R2's `us` jurisdiction is served at <account>.us.r2.cloudflarestorage.com."""
    with mocked() as mocks:
        bucket = build(mocks, bucket_jurisdiction="us")
        assert settle(bucket.s3_endpoint)[0] == f"https://{ACCOUNT_ID}.us.r2.cloudflarestorage.com"
        resources = tokens(mocks)["app"]["policies"][0]["resources"]  # type: ignore[index]
        assert f"{ACCOUNT_ID}_us_comfyui-runpod-staging" in resources
