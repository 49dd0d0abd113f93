"""The single place that builds the boto3 client for Cloudflare R2.

Owns: reading the R2 settings from the worker environment, the botocore client config that
R2 accepts (SigV4, path-style, region ``auto``, checksums only when required, standard
retries, timeouts), the multipart transfer config with uniform part sizes, and the ETag a
correct upload of a local file must produce. Deliberately does not upload anything: the
sync daemon and the handler own their upload loops.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from s3transfer.utils import ChunksizeAdjuster

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024
#: Files at or above this size go up as multipart; below it, one PUT with an MD5 ETag.
MULTIPART_THRESHOLD = 16 * MIB
#: Every part but the last has exactly this size (R2 requires uniform parts).
PART_SIZE = 16 * MIB

REQUIRED_ENV = ("R2_ENDPOINT", "R2_BUCKET", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY")


class R2ConfigError(ValueError):
    """The worker environment lacks or garbles an R2 setting."""


@dataclass(frozen=True, kw_only=True)
class R2Settings:
    """Where and as whom the worker writes objects."""

    endpoint: str
    """S3 API URL, ``https://<account>.r2.cloudflarestorage.com`` (``.eu.`` for EU)."""
    bucket: str
    """Bucket name."""
    access_key_id: str
    """S3 access key id (the Cloudflare API token id)."""
    secret_access_key: str = field(repr=False)
    """S3 secret (SHA-256 hex of the token value); never printed."""
    prefix: str = ""
    """Key prefix for everything this worker writes, e.g. ``staging/``."""
    public_base_url: str | None = None
    """Public bucket URL (custom domain or r2.dev); when unset, URLs are presigned."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> R2Settings:
        """Read ``R2_*`` variables; raise :class:`R2ConfigError` naming every missing one."""
        env = os.environ if env is None else env
        missing = [name for name in REQUIRED_ENV if not env.get(name, "").strip()]
        if missing:
            raise R2ConfigError(
                f"R2 is not configured: {', '.join(missing)} unset. Set them on the RunPod "
                "template or endpoint (credentials as {{ RUNPOD_SECRET_<name> }} references)."
            )
        endpoint = env["R2_ENDPOINT"].strip().rstrip("/")
        if not endpoint.startswith(("https://", "http://")):
            raise R2ConfigError(
                f"R2_ENDPOINT must be a URL like https://<account>.r2.cloudflarestorage.com, "
                f"got {endpoint!r}"
            )
        public = env.get("R2_PUBLIC_BASE_URL", "").strip().rstrip("/") or None
        return cls(
            endpoint=endpoint,
            bucket=env["R2_BUCKET"].strip(),
            access_key_id=env["R2_ACCESS_KEY_ID"].strip(),
            secret_access_key=env["R2_SECRET_ACCESS_KEY"].strip(),
            prefix=normalise_prefix(env.get("R2_PREFIX", "")),
            public_base_url=public,
        )


def normalise_prefix(prefix: str) -> str:
    """Return ``prefix`` without a leading slash and with exactly one trailing slash."""
    cleaned = prefix.strip().strip("/")
    return f"{cleaned}/" if cleaned else ""


def object_key(prefix: str, relative_path: str) -> str:
    """Key for a file at ``relative_path`` (POSIX separators) under ``prefix``."""
    return normalise_prefix(prefix) + relative_path.lstrip("/")


def client_config(
    *,
    max_attempts: int = 5,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
    max_pool_connections: int = 16,
) -> Config:
    """The botocore config R2 accepts.

    botocore >= 1.36 adds CRC32 checksums (often as aws-chunked trailers) to every upload and
    validates response checksums; R2 rejects those requests, so both are "when_required".
    """
    return Config(
        region_name="auto",
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
    )


def make_client(settings: R2Settings, *, config: Config | None = None) -> S3Client:
    """A boto3 S3 client for ``settings`` with :func:`client_config` unless one is given."""
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=settings.endpoint,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        config=config or client_config(),
    )


def transfer_config(*, max_concurrency: int = 4) -> TransferConfig:
    """Multipart settings with uniform parts, as R2 requires."""
    return TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD,
        multipart_chunksize=PART_SIZE,
        max_concurrency=max_concurrency,
        use_threads=max_concurrency > 1,
    )


def part_size_for(size: int) -> int:
    """The part size s3transfer really uses for a file of ``size`` bytes.

    It grows the configured size when the file would need more than 10,000 parts.
    """
    return int(ChunksizeAdjuster().adjust_chunksize(PART_SIZE, size))


def expected_etag(path: Path, *, chunk: int = 4 * MIB) -> str:
    """The ETag R2 (and S3) reports after :func:`transfer_config` uploads ``path``.

    Single PUT: hex MD5 of the bytes. Multipart: hex MD5 of the concatenated binary part
    MD5s, then ``-<parts>``. Quotes are not included.
    """
    size = path.stat().st_size
    if size < MULTIPART_THRESHOLD:
        digest = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
        return digest.hexdigest()
    part_size = part_size_for(size)
    part_digests: list[bytes] = []
    with path.open("rb") as handle:
        while True:
            remaining = part_size
            digest = hashlib.md5(usedforsecurity=False)
            while remaining and (block := handle.read(min(chunk, remaining))):
                digest.update(block)
                remaining -= len(block)
            if remaining == part_size:
                break
            part_digests.append(digest.digest())
            if remaining:
                break
    combined = hashlib.md5(b"".join(part_digests), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(part_digests)}"


def strip_etag(etag: str) -> str:
    """ETag as S3 returns it (quoted) in the bare form :func:`expected_etag` produces."""
    return etag.strip().strip('"')
