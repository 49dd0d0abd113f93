"""The R2 client settings that no local S3 server can check for us."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from worker import r2


def test_client_config_sends_checksums_only_when_required() -> None:
    """R2 rejects botocore's default CRC32 trailers, so both checksum modes are when_required."""
    config = r2.client_config()
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"


def test_client_config_speaks_r2_dialect() -> None:
    """Region auto, SigV4, path-style addressing, standard retries and finite timeouts."""
    config = r2.client_config(max_attempts=7)
    assert config.region_name == "auto"
    assert config.signature_version == "s3v4"
    assert config.s3 == {"addressing_style": "path"}
    assert config.retries == {"mode": "standard", "max_attempts": 7}
    assert 0 < config.connect_timeout <= 30
    assert 0 < config.read_timeout <= 120


def test_made_client_carries_the_r2_config(r2_bucket: r2.R2Settings) -> None:
    """make_client applies client_config, not botocore defaults."""
    client = r2.make_client(r2_bucket)
    assert client.meta.config.request_checksum_calculation == "when_required"
    assert client.meta.config.s3 == {"addressing_style": "path"}
    assert client.meta.region_name == "auto"


def test_transfer_config_uses_uniform_parts() -> None:
    """Multipart threshold and chunk size are the same fixed size, so parts are uniform."""
    config = r2.transfer_config()
    assert config.multipart_chunksize == r2.PART_SIZE
    assert config.multipart_threshold == r2.MULTIPART_THRESHOLD
    assert 5 * r2.MIB <= r2.PART_SIZE <= 5 * 1024 * r2.MIB


def test_settings_from_env_names_every_missing_variable() -> None:
    """A worker without R2 env fails with all missing names, not the first one."""
    with pytest.raises(r2.R2ConfigError, match="R2_ENDPOINT, R2_BUCKET, R2_ACCESS_KEY_ID"):
        r2.R2Settings.from_env({"R2_SECRET_ACCESS_KEY": "x"})


def test_settings_repr_hides_the_secret() -> None:
    """The secret access key never appears in a repr that could reach a log."""
    settings = r2.R2Settings.from_env(
        {
            "R2_ENDPOINT": "https://acct.r2.cloudflarestorage.com/",
            "R2_BUCKET": "b",
            "R2_ACCESS_KEY_ID": "id",
            "R2_SECRET_ACCESS_KEY": "very-secret-value",
            "R2_PREFIX": "/staging",
        }
    )
    assert "very-secret-value" not in repr(settings)
    assert settings.prefix == "staging/"
    assert settings.endpoint == "https://acct.r2.cloudflarestorage.com"


@pytest.mark.parametrize("size", [0, 1, r2.MULTIPART_THRESHOLD - 1])
def test_expected_etag_of_small_file_is_its_md5(tmp_path: Path, size: int) -> None:
    """Below the multipart threshold the ETag is the plain MD5."""
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert r2.expected_etag(path) == hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.mark.parametrize(
    "size", [r2.MULTIPART_THRESHOLD, r2.MULTIPART_THRESHOLD + 1, 2 * r2.PART_SIZE + 5]
)
def test_expected_etag_matches_what_s3_reports_for_multipart(
    tmp_path: Path, r2_bucket: r2.R2Settings, size: int
) -> None:
    """The locally computed multipart ETag equals the one the S3 server returns."""
    path = tmp_path / "big.bin"
    path.write_bytes(b"\x01\x02\x03" * (size // 3) + b"\x09" * (size % 3))
    client = r2.make_client(r2_bucket)
    client.upload_file(str(path), r2_bucket.bucket, "big.bin", Config=r2.transfer_config())
    head = client.head_object(Bucket=r2_bucket.bucket, Key="big.bin")
    assert r2.strip_etag(head["ETag"]) == r2.expected_etag(path)
    assert "-" in r2.expected_etag(path)


def test_object_key_joins_prefix_and_relative_path() -> None:
    """Keys are prefix + POSIX relative path with exactly one slash between."""
    assert r2.object_key("staging", "video/a.mp4") == "staging/video/a.mp4"
    assert r2.object_key("", "/a.png") == "a.png"


@pytest.mark.parametrize("size", [3000, 17 * r2.MIB])
def test_create_object_never_replaces_an_existing_object(
    r2_bucket: r2.R2Settings, size: int
) -> None:
    """A second write to a taken key is refused by the server (If-None-Match: *), in one PUT
    and in a multipart upload; the first bytes stay."""
    client = r2.make_client(r2_bucket)
    first, second = os.urandom(size), os.urandom(size)

    def create(data: bytes) -> str:
        return r2.create_object(
            client,
            bucket=r2_bucket.bucket,
            key="taken.mp4",
            read_at=lambda offset, length: data[offset : offset + length],
            size=len(data),
            headers=r2.object_headers("taken.mp4"),
        )

    etag = create(first)
    with pytest.raises(r2.ObjectExistsError) as refused:
        create(second)
    assert refused.value.etag != etag
    body = client.get_object(Bucket=r2_bucket.bucket, Key="taken.mp4")["Body"].read()
    assert body == first
    assert client.list_multipart_uploads(Bucket=r2_bucket.bucket).get("Uploads", []) == []


def test_media_allowlist_makes_everything_else_a_download() -> None:
    """Images, video and audio keep their type; HTML, SVG and unknown files are attachments."""
    assert r2.object_headers("a/b.PNG") == {"ContentType": "image/png"}
    assert r2.object_headers("v.webm") == {"ContentType": "video/webm"}
    for name in ("login.html", "x.svg", "page.htm", "data.json", "noext", "a.js"):
        assert r2.object_headers(name) == {
            "ContentType": "application/octet-stream",
            "ContentDisposition": "attachment",
        }, name
