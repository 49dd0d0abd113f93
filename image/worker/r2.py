"""The single place that builds the boto3 client for Cloudflare R2.

Owns: reading the R2 settings from the worker environment, the botocore client config that
R2 accepts (SigV4, path-style, region ``auto``, checksums only when required, standard
retries, timeouts), the multipart transfer config with uniform part sizes, the ETag a
correct upload of a local file must produce, the media-type allowlist both writers apply
(anything else is stored as an ``attachment`` of type ``application/octet-stream``, so the
bucket never serves HTML or SVG to a browser), and :func:`create_object`: one object written
only if its key is free (``If-None-Match: *`` on PutObject and CompleteMultipartUpload, which
R2 honours), never over other bytes. The sync daemon and the handler own their retry loops
and their key schemes.

Retries here are botocore's own ("standard" mode in :func:`client_config`: a few attempts
per request with jittered backoff, throttling and 5xx answers included); wrapping calls in
tenacity as well would multiply the attempts, so this module has no retry code of its own.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError
from s3transfer.utils import ChunksizeAdjuster

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIB = 1024 * 1024
#: Files at or above this size go up as multipart; below it, one PUT with an MD5 ETag.
MULTIPART_THRESHOLD = 16 * MIB
#: Every part but the last has exactly this size (R2 requires uniform parts).
PART_SIZE = 16 * MIB

REQUIRED_ENV = ("R2_ENDPOINT", "R2_BUCKET", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY")

#: The only media types the bucket serves as themselves: images, video and audio that a
#: browser renders without running code. SVG, HTML, XML, JavaScript, PDF and everything
#: else go up as ``application/octet-stream`` with ``Content-Disposition: attachment``.
MEDIA_TYPES: Mapping[str, str] = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".avif": "image/avif",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".opus": "audio/ogg",
    ".ogg": "audio/ogg",
    ".m4a": "audio/mp4",
}
#: Type of everything outside :data:`MEDIA_TYPES` (always with an attachment disposition).
OTHER_TYPE = "application/octet-stream"


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


def content_type(name: str) -> str:
    """The Content-Type stored for a file called ``name``: allowlisted media or octet-stream.

    The one table for every writer (the handler's uploads, the sync daemon): never the
    host's ``mimetypes`` database, which differs between machines (``audio/x-wav``).
    """
    return MEDIA_TYPES.get(PurePosixPath(name).suffix.lower(), OTHER_TYPE)


def object_headers(name: str) -> dict[str, str]:
    """PutObject/CreateMultipartUpload arguments that make ``name`` safe to serve.

    Media types from the allowlist keep their type; anything else (an HTML page or SVG
    planted in the output folder, a JSON sidecar) is stored as a download, never rendered.
    """
    stored = content_type(name)
    if stored == OTHER_TYPE:
        return {"ContentType": OTHER_TYPE, "ContentDisposition": "attachment"}
    return {"ContentType": stored}


def encode_path(relative: str) -> str:
    """``relative`` (as :func:`os.fsdecode` gives it) as text any key or journal can hold.

    Valid UTF-8 stays as it is; ``%``, control characters and bytes that are not UTF-8
    (surrogate escapes) become ``%XX``. :func:`decode_path` reverses it exactly.
    """
    out: list[str] = []
    for char in relative:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"%{code - 0xDC00:02X}")
        elif char == "%" or code < 0x20 or code == 0x7F:
            out.append(f"%{code:02X}")
        else:
            out.append(char)
    return "".join(out)


def decode_path(encoded: str) -> str:
    """The relative path :func:`encode_path` turned into ``encoded``."""
    return os.fsdecode(unquote_to_bytes(encoded))


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


#: ``read_at(offset, length)``: up to ``length`` bytes of a source from ``offset``.
ReadAt = Callable[[int, int], bytes]


def _md5_of(read_at: ReadAt, offset: int, length: int, chunk: int) -> bytes:
    digest = hashlib.md5(usedforsecurity=False)
    done = 0
    while done < length:
        block = read_at(offset + done, min(chunk, length - done))
        if not block:
            raise SourceChangedError(f"source ended at {offset + done} of {offset + length}")
        digest.update(block)
        done += len(block)
    return digest.digest()


def etag_of(read_at: ReadAt, size: int, *, chunk: int = 4 * MIB) -> str:
    """The ETag :func:`create_object` (and :func:`transfer_config`) produce for ``size`` bytes.

    Single PUT: hex MD5 of the bytes. Multipart: hex MD5 of the concatenated binary part
    MD5s, then ``-<parts>``. Quotes are not included.
    """
    if size < MULTIPART_THRESHOLD:
        return _md5_of(read_at, 0, size, chunk).hex()
    part_size = part_size_for(size)
    digests = [
        _md5_of(read_at, offset, min(part_size, size - offset), chunk)
        for offset in range(0, size, part_size)
    ]
    combined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(digests)}"


def expected_etag(path: Path, *, chunk: int = 4 * MIB) -> str:
    """The ETag R2 (and S3) reports after ``path`` is uploaded with uniform parts."""
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        return etag_of(lambda offset, length: os.pread(handle.fileno(), length, offset), size)


def strip_etag(etag: str) -> str:
    """ETag as S3 returns it (quoted) in the bare form :func:`expected_etag` produces."""
    return etag.strip().strip('"')


class SourceChangedError(Exception):
    """The bytes being uploaded changed size while they were read; try again later."""


class ObjectExistsError(Exception):
    """The key already holds an object (412); ``etag`` is what these bytes would have made."""

    def __init__(self, key: str, etag: str) -> None:
        super().__init__(f"{key} already exists")
        self.key = key
        self.etag = etag


class EtagMismatchError(Exception):
    """The bucket acknowledged the write with an ETag other than the bytes sent."""


def _precondition_failed(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error.get("Code") == "PreconditionFailed" or status == 412


def create_object(
    client: S3Client,
    *,
    bucket: str,
    key: str,
    read_at: ReadAt,
    size: int,
    headers: Mapping[str, str],
    part_concurrency: int = 4,
) -> str:
    """Write ``size`` bytes from ``read_at`` to ``key`` only if no object is there yet.

    Sends ``If-None-Match: *`` on the PutObject or the CompleteMultipartUpload, so an
    existing object is never replaced; raises :class:`ObjectExistsError` (with the ETag these
    bytes would have had) when the key is taken. Each part carries its Content-MD5; the
    returned ETag (unquoted) is checked against the MD5s of the bytes actually sent.
    """
    extra: dict[str, Any] = dict(headers)
    if size < MULTIPART_THRESHOLD:
        body = read_at(0, size) if size else b""
        if len(body) != size:
            raise SourceChangedError(f"read {len(body)} of {size} bytes")
        digest = hashlib.md5(body, usedforsecurity=False)
        expected = digest.hexdigest()
        try:
            answer = client.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentMD5=base64.b64encode(digest.digest()).decode(),
                IfNoneMatch="*",
                **extra,
            )
        except ClientError as exc:
            if _precondition_failed(exc):
                raise ObjectExistsError(key, expected) from exc
            raise
        etag = strip_etag(answer["ETag"])
    else:
        expected, etag = _multipart(
            client,
            bucket=bucket,
            key=key,
            read_at=read_at,
            size=size,
            extra=extra,
            concurrency=part_concurrency,
        )
    if etag != expected:
        raise EtagMismatchError(f"bucket ETag {etag} != local {expected} for {key}")
    return etag


def create_or_match(
    client: S3Client,
    *,
    bucket: str,
    key: str,
    read_at: ReadAt,
    size: int,
    headers: Mapping[str, str],
    part_concurrency: int = 4,
) -> str | None:
    """:func:`create_object`, where a key already holding these very bytes counts as stored
    (a retried request that did land): the ETag; None when the key holds other bytes."""
    try:
        return create_object(
            client,
            bucket=bucket,
            key=key,
            read_at=read_at,
            size=size,
            headers=headers,
            part_concurrency=part_concurrency,
        )
    except ObjectExistsError as taken:
        there = strip_etag(client.head_object(Bucket=bucket, Key=key)["ETag"])
        return there if there == taken.etag else None


def _multipart(
    client: S3Client,
    *,
    bucket: str,
    key: str,
    read_at: ReadAt,
    size: int,
    extra: dict[str, Any],
    concurrency: int,
) -> tuple[str, str]:
    part_size = part_size_for(size)
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]

    def send(number: int) -> tuple[bytes, CompletedPartTypeDef]:
        offset = (number - 1) * part_size
        length = min(part_size, size - offset)
        body = read_at(offset, length)
        if len(body) != length:
            raise SourceChangedError(f"part {number}: read {len(body)} of {length} bytes")
        digest = hashlib.md5(body, usedforsecurity=False).digest()
        answer = client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            ContentMD5=base64.b64encode(digest).decode(),
        )
        return digest, {"PartNumber": number, "ETag": answer["ETag"]}

    numbers = range(1, (size + part_size - 1) // part_size + 1)
    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            sent = list(pool.map(send, numbers))
        expected = hashlib.md5(b"".join(d for d, _ in sent), usedforsecurity=False).hexdigest()
        expected = f"{expected}-{len(sent)}"
        try:
            answer = client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [part for _, part in sent]},
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if _precondition_failed(exc):
                raise ObjectExistsError(key, expected) from exc
            raise
    except BaseException:
        with contextlib.suppress(Exception):
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
    return expected, strip_etag(answer["ETag"])
