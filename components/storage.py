"""OutputBucket: the R2 bucket every generated file lands in, and who may touch it.

Owns: the bucket (name, location hint, jurisdiction), its lifecycle (expire generated objects
after N days when configured; always abort incomplete multipart uploads), CORS for the app's
origins, and two account-owned API tokens scoped to this bucket only: the worker's (object
read + write) and the app's (object read). Exposes S3-style credentials derived from those
tokens (access key id = token id, secret = SHA-256 hex of the token value) as secret
Outputs, the S3 endpoint that matches the jurisdiction, and the public base URL if any.

The bucket holds every generated asset, so it is registered with ``protect=True`` unless the
stack sets ``data.allowDeletion``: Pulumi then refuses any plan that deletes or replaces it.
R2 cannot move a bucket between jurisdictions, so a changed jurisdiction plans a replacement
(``replace_on_changes``) that the protection refuses before anything is touched. Even with
deletion allowed the bucket is only ever dropped from the stack (``retain_on_delete``), never
deleted with its objects.

Deliberately does not own: the public domain itself (set up once in the dashboard and passed
in as ``bucket.publicBaseUrl``), or where the credentials go (RunPod secrets, GitHub).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence

import pulumi
import pulumi_cloudflare as cloudflare

from components import Options
from components.config import R2_JURISDICTIONS, BucketSettings

#: Cloudflare permission groups, looked up by name (ids differ per account and change).
ITEM_READ = "Workers R2 Storage Bucket Item Read"
ITEM_WRITE = "Workers R2 Storage Bucket Item Write"

_DAY_SECONDS = 86_400
_CORS_MAX_AGE_SECONDS = 3_600


def s3_endpoint(account_id: str, jurisdiction: str) -> str:
    """The S3 API URL of an account's buckets in ``jurisdiction``."""
    return f"https://{account_id}{R2_JURISDICTIONS[jurisdiction]}.r2.cloudflarestorage.com"


def bucket_resource(account_id: str, jurisdiction: str, bucket: str) -> str:
    """The token-policy resource name that means "this one bucket"."""
    return f"com.cloudflare.edge.r2.bucket.{account_id}_{jurisdiction}_{bucket}"


def policy_resources(account_id: str, jurisdiction: str, bucket: str) -> str:
    """A token policy's ``resources``: compact, key-sorted JSON, as the API stores it.

    The provider keeps ``resources`` as a plain string and reads back the API's compact
    form; ``json.dumps`` defaults (``", "``, ``": "``) would differ from it on every
    refresh and rewrite both tokens on every ``up``.
    """
    return json.dumps(
        {bucket_resource(account_id, jurisdiction, bucket): "*"},
        separators=(",", ":"),
        sort_keys=True,
    )


def s3_secret(token_value: str) -> str:
    """R2's S3 secret access key for an API token: the SHA-256 hex of its value."""
    return hashlib.sha256(token_value.encode()).hexdigest()


class OutputBucket(pulumi.ComponentResource):
    """An R2 bucket with lifecycle, CORS and two bucket-scoped tokens."""

    bucket_name: pulumi.Output[str]
    """The bucket's name."""
    s3_endpoint: pulumi.Output[str]
    """S3 API endpoint (``R2_ENDPOINT``)."""
    prefix: pulumi.Output[str]
    """Key prefix of generated objects (``R2_PREFIX``)."""
    public_base_url: pulumi.Output[str]
    """Public URL of the bucket, or empty when objects are served by presigned URLs."""
    worker_access_key_id: pulumi.Output[str]
    """Worker's S3 access key id (read + write), secret."""
    worker_secret_access_key: pulumi.Output[str]
    """Worker's S3 secret access key (read + write), secret."""
    app_access_key_id: pulumi.Output[str]
    """App's S3 access key id (read only), secret."""
    app_secret_access_key: pulumi.Output[str]
    """App's S3 secret access key (read only), secret."""

    def __init__(
        self, name: str, *, account_id: str, settings: BucketSettings, opts: Options = None
    ) -> None:
        super().__init__("comfyui-runpod:index:OutputBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        bucket = cloudflare.R2Bucket(
            f"{name}-bucket",
            account_id=account_id,
            name=settings.name,
            location=settings.location,
            jurisdiction=settings.jurisdiction,
            # protect: a plan that deletes or replaces the bucket fails before it starts.
            # retain_on_delete: R2 deletes only empty buckets, so a Pulumi delete could only
            # fail half-way; once deletion is allowed, a replacement (a move) or a destroy
            # leaves the old bucket and its objects in place, to copy and delete by hand.
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=not settings.allow_deletion,
                retain_on_delete=True,
                replace_on_changes=["jurisdiction"],
            ),
        )
        cloudflare.R2BucketLifecycle(
            f"{name}-lifecycle",
            account_id=account_id,
            bucket_name=bucket.name,
            jurisdiction=settings.jurisdiction,
            rules=_lifecycle_rules(settings),
            opts=child,
        )
        if settings.cors_origins:
            cloudflare.R2BucketCors(
                f"{name}-cors",
                account_id=account_id,
                bucket_name=bucket.name,
                jurisdiction=settings.jurisdiction,
                rules=[
                    cloudflare.R2BucketCorsRuleArgs(
                        id="app-read",
                        allowed=cloudflare.R2BucketCorsRuleAllowedArgs(
                            methods=["GET", "HEAD"],
                            origins=list(settings.cors_origins),
                            headers=["*"],
                        ),
                        expose_headers=["ETag", "Content-Length", "Content-Type"],
                        max_age_seconds=_CORS_MAX_AGE_SECONDS,
                    )
                ],
                opts=child,
            )

        resources = bucket.name.apply(
            lambda bucket_name: policy_resources(account_id, settings.jurisdiction, bucket_name)
        )
        group_ids = _permission_group_ids(account_id, (ITEM_READ, ITEM_WRITE), parent=self)
        worker = _bucket_token(
            f"{name}-worker-token",
            account_id=account_id,
            token_name=f"{settings.name}-worker",
            group_ids=[group_ids[ITEM_READ], group_ids[ITEM_WRITE]],
            resources=resources,
            opts=child,
        )
        app = _bucket_token(
            f"{name}-app-token",
            account_id=account_id,
            token_name=f"{settings.name}-app",
            group_ids=[group_ids[ITEM_READ]],
            resources=resources,
            opts=child,
        )

        self.bucket_name = bucket.name
        self.s3_endpoint = pulumi.Output.from_input(s3_endpoint(account_id, settings.jurisdiction))
        self.prefix = pulumi.Output.from_input(settings.prefix)
        self.public_base_url = pulumi.Output.from_input(settings.public_base_url or "")
        self.worker_access_key_id = pulumi.Output.secret(worker.id)
        self.worker_secret_access_key = pulumi.Output.secret(worker.value.apply(s3_secret))
        self.app_access_key_id = pulumi.Output.secret(app.id)
        self.app_secret_access_key = pulumi.Output.secret(app.value.apply(s3_secret))
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "s3_endpoint": self.s3_endpoint,
                "prefix": self.prefix,
                "public_base_url": self.public_base_url,
                "worker_access_key_id": self.worker_access_key_id,
                "worker_secret_access_key": self.worker_secret_access_key,
                "app_access_key_id": self.app_access_key_id,
                "app_secret_access_key": self.app_secret_access_key,
            }
        )


def _lifecycle_rules(settings: BucketSettings) -> list[cloudflare.R2BucketLifecycleRuleArgs]:
    rules = [
        cloudflare.R2BucketLifecycleRuleArgs(
            id="abort-incomplete-multipart",
            enabled=True,
            conditions=cloudflare.R2BucketLifecycleRuleConditionsArgs(prefix=""),
            abort_multipart_uploads_transition=(
                cloudflare.R2BucketLifecycleRuleAbortMultipartUploadsTransitionArgs(
                    condition=cloudflare.R2BucketLifecycleRuleAbortMultipartUploadsTransitionConditionArgs(
                        type="Age", max_age=settings.abort_multipart_days * _DAY_SECONDS
                    )
                )
            ),
        )
    ]
    if settings.expire_days:
        rules.append(
            cloudflare.R2BucketLifecycleRuleArgs(
                id="expire-generated",
                enabled=True,
                conditions=cloudflare.R2BucketLifecycleRuleConditionsArgs(prefix=settings.prefix),
                delete_objects_transition=cloudflare.R2BucketLifecycleRuleDeleteObjectsTransitionArgs(
                    condition=cloudflare.R2BucketLifecycleRuleDeleteObjectsTransitionConditionArgs(
                        type="Age", max_age=settings.expire_days * _DAY_SECONDS
                    )
                ),
            )
        )
    return rules


def _bucket_token(
    resource_name: str,
    *,
    account_id: str,
    token_name: str,
    group_ids: Sequence[pulumi.Output[str]],
    resources: pulumi.Output[str],
    opts: pulumi.ResourceOptions,
) -> cloudflare.AccountToken:
    return cloudflare.AccountToken(
        resource_name,
        account_id=account_id,
        name=token_name,
        policies=[
            cloudflare.AccountTokenPolicyArgs(
                effect="allow",
                permission_groups=[
                    cloudflare.AccountTokenPolicyPermissionGroupArgs(id=group_id)
                    for group_id in group_ids
                ],
                resources=resources,
            )
        ],
        opts=pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["value"])
        ),
    )


def _permission_group_ids(
    account_id: str, groups: Sequence[str], *, parent: pulumi.Resource
) -> dict[str, pulumi.Output[str]]:
    """Ids of the named permission groups, from one unfiltered listing.

    The ``name`` filter of the listing must be URL-encoded by the caller (per the SDK) and
    how the provider passes it on is not documented, so nothing is filtered server-side:
    the names are matched here, exactly, and a missing one fails with the names found.
    """
    # parent= makes the lookup use the component's (explicit) Cloudflare provider.
    listing = cloudflare.get_account_api_token_permission_groups_list_output(
        account_id=account_id, opts=pulumi.InvokeOutputOptions(parent=parent)
    )
    return {group: listing.results.apply(functools.partial(_pick, group=group)) for group in groups}


def _pick(
    results: Sequence[cloudflare.outputs.GetAccountApiTokenPermissionGroupsListResultResult],
    group: str,
) -> str:
    ids = {result.id for result in results if result.name == group}
    if len(ids) == 1:
        return ids.pop()
    names = sorted({result.name for result in results})
    related = [name for name in names if "R2" in name] or names[:20]
    raise ValueError(
        f"expected one Cloudflare permission group named {group!r}, found {len(ids)} among "
        f"{len(names)} groups; R2 groups listed: {', '.join(related) or 'none'}. "
        "Check that cloudflare.apiToken may read API token permission groups "
        "(Account API Tokens Read)"
    )
