"""`python -m ops lora upload|list` against a real S3 server (moto) standing in for R2."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from worker import loras
from worker.r2 import R2Settings, make_client

from tests.fakes.s3 import settings_env
from tests.image.lora_support import safetensors_bytes
from tests.ops.cli_lines import unknown_options
from tests.ops.conftest import invoke


def _env(bucket: R2Settings | None) -> dict[str, str | None]:
    env: dict[str, str | None] = dict.fromkeys(
        ("R2_ENDPOINT", "R2_BUCKET", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY")
    )
    if bucket is not None:
        env.update(settings_env(bucket))
    return env


def test_upload_puts_the_file_under_loras_with_its_sha256_and_prints_the_snippet(
    r2_bucket: R2Settings, tmp_path: Path
) -> None:
    """The key is loras/<16 hex of sha256>/<name>, outside R2_PREFIX (which expires); the
    object carries its sha256; stdout ends with the job's loras entry."""
    data = safetensors_bytes(1, floats=64)
    path = tmp_path / "castle style.safetensors"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    result = invoke(["lora", "upload", str(path), "--strength", "0.7"], _env(r2_bucket))
    assert result.exit_code == 0, result.output
    key = f"loras/{sha[:16]}/castle_style.safetensors"
    assert f"uploaded {key}" in result.stdout
    snippet = json.loads(result.stdout.strip().splitlines()[-1])
    assert snippet == {"loras": [{"key": key, "strength": 0.7}]}
    assert not key.startswith(r2_bucket.prefix)
    head = make_client(r2_bucket).head_object(Bucket=r2_bucket.bucket, Key=key)
    assert head["Metadata"]["sha256"] == sha
    body = make_client(r2_bucket).get_object(Bucket=r2_bucket.bucket, Key=key)["Body"].read()
    assert body == data
    assert loras.KEY_PATTERN.fullmatch(key)


def test_the_same_file_again_is_already_uploaded_and_nothing_is_overwritten(
    r2_bucket: R2Settings, tmp_path: Path
) -> None:
    """A second upload of the same bytes changes nothing; a key holding other bytes is
    never replaced, and --name gives another key."""
    path = tmp_path / "ink.safetensors"
    path.write_bytes(safetensors_bytes(2))
    first = invoke(["lora", "upload", str(path), "--json"], _env(r2_bucket))
    assert json.loads(first.stdout)["created"] is True
    again = invoke(["lora", "upload", str(path), "--json"], _env(r2_bucket))
    document = json.loads(again.stdout)
    assert again.exit_code == 0
    assert document["created"] is False
    key = document["key"]
    other = tmp_path / "other.safetensors"
    other.write_bytes(safetensors_bytes(3))
    taken = key.rsplit("/", 2)[0] + "/" + hashlib.sha256(other.read_bytes()).hexdigest()[:16]
    make_client(r2_bucket).put_object(
        Bucket=r2_bucket.bucket, Key=f"{taken}/other.safetensors", Body=b"someone else's"
    )
    clash = invoke(["lora", "upload", str(other)], _env(r2_bucket))
    assert clash.exit_code == 2
    assert "never overwritten" in clash.stderr
    assert "--name" in clash.stderr
    renamed = invoke(
        ["lora", "upload", str(other), "--name", "other_v2", "--json"], _env(r2_bucket)
    )
    assert json.loads(renamed.stdout)["key"].endswith("/other_v2.safetensors")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("model.ckpt", b"pickle", "must be .safetensors files"),
        ("broken.safetensors", b"\xff" * 8 + b"{}", "not a valid safetensors file"),
        ("cut.safetensors", safetensors_bytes(4)[:-5], "outside the file"),
    ],
)
def test_files_a_worker_would_refuse_are_refused_before_any_upload(
    r2_bucket: R2Settings, tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    """Pickles, garbage and truncated files: exit 2 with the reason, nothing in the bucket."""
    path = tmp_path / name
    path.write_bytes(content)
    result = invoke(["lora", "upload", str(path)], _env(r2_bucket))
    assert result.exit_code == 2
    assert message in result.stderr
    listed = make_client(r2_bucket).list_objects_v2(Bucket=r2_bucket.bucket)
    assert listed.get("KeyCount", 0) == 0


def test_missing_credentials_name_the_variables(tmp_path: Path) -> None:
    """Without R2_* the command stops with exit 2, naming what to export."""
    path = tmp_path / "a.safetensors"
    path.write_bytes(safetensors_bytes(5))
    result = invoke(["lora", "upload", str(path)], _env(None))
    assert result.exit_code == 2
    assert "R2_ENDPOINT" in result.stderr
    assert "R2_SECRET_ACCESS_KEY" in result.stderr


def test_list_shows_every_lora_with_its_sha256(r2_bucket: R2Settings, tmp_path: Path) -> None:
    """list: each .safetensors under loras/ with size and sha256 (or that none was recorded)."""
    path = tmp_path / "a.safetensors"
    path.write_bytes(safetensors_bytes(6))
    key = json.loads(invoke(["lora", "upload", str(path), "--json"], _env(r2_bucket)).stdout)["key"]
    make_client(r2_bucket).put_object(
        Bucket=r2_bucket.bucket, Key="loras/manual/b.safetensors", Body=safetensors_bytes(7)
    )
    make_client(r2_bucket).put_object(Bucket=r2_bucket.bucket, Key="loras/readme.txt", Body=b"x")
    result = invoke(["lora", "list", "--json"], _env(r2_bucket))
    assert result.exit_code == 0, result.output
    found = {entry["key"]: entry for entry in json.loads(result.stdout)["loras"]}
    assert set(found) == {key, "loras/manual/b.safetensors"}
    assert found[key]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert found["loras/manual/b.safetensors"]["sha256"] is None
    table = invoke(["lora", "list"], _env(r2_bucket))
    assert "(not recorded)" in table.stdout


def test_the_doc_checker_knows_lora_subcommands() -> None:
    """`lora upload --name` is valid; `lora push` and `lora upload --bogus` are not."""
    assert unknown_options(["lora", "upload", "f.safetensors", "--name", "x"]) == []
    assert unknown_options(["lora", "push"]) == ["no command 'lora push'"]
    assert unknown_options(["lora", "upload", "--bogus"]) == ["--bogus"]
