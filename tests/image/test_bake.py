"""Model baking (image/bake_slot.py): one file per slot, refused above a registry layer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import bake_slot
import pytest

from tests.fakes.http_files import FakeFile, FileServer, file_server

ROOT = Path(__file__).resolve().parents[2]


def _manifest(path: Path, server: FileServer, entries: list[dict[str, object]]) -> Path:
    lines: list[str] = []
    for entry in entries:
        lines.append("[[model]]")
        fields = {"url": server.url(str(entry["name"])), "gated": False, **entry}
        fields.setdefault("path", f"vae/{entry['name']}")
        for key, value in fields.items():
            lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _env(manifest: Path, models: Path, groups: str) -> dict[str, str]:
    return {
        "MODEL_MANIFEST": str(manifest),
        "MODELS_DIR": str(models),
        "BAKE_MODEL_GROUPS": groups,
    }


def test_each_slot_downloads_one_model_and_finish_marks_the_bake(tmp_path: Path) -> None:
    """Slot 0 and 1 each fetch one file (verified), slot 2 is empty, --finish writes .baked."""
    files = {"a.bin": FakeFile(b"a" * 1000), "b.bin": FakeFile(b"b" * 2000)}
    with file_server(files) as server:
        manifest = _manifest(
            tmp_path / "models.toml",
            server,
            [
                {"name": "a.bin", "groups": ["g"], "size": 1000},
                {"name": "b.bin", "groups": ["g", "h"]},
            ],
        )
        env = _env(manifest, tmp_path / "models", "g")
        token = tmp_path / "no-token"
        assert bake_slot.main(["0", "--slots", "3", "--token-file", str(token)], env) == 0
        assert sorted(p.name for p in (tmp_path / "models" / "vae").iterdir()) == ["a.bin"]
        assert bake_slot.main(["1", "--slots", "3", "--token-file", str(token)], env) == 0
        assert (tmp_path / "models" / "vae" / "b.bin").read_bytes() == b"b" * 2000
        gets = [r for r in server.requests if r.method == "GET"]
        assert bake_slot.main(["2", "--slots", "3", "--token-file", str(token)], env) == 0
        assert [r for r in server.requests if r.method == "GET"] == gets
    assert bake_slot.main(["--finish"], env) == 0
    assert (tmp_path / "models" / ".baked").read_text() == "g\n"


def test_a_file_over_the_layer_limit_fails_before_downloading(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The manifest size says too big: exit 6, the message points at the network volume."""
    with file_server({"big.bin": FakeFile(b"x" * 10)}) as server:
        manifest = _manifest(
            tmp_path / "models.toml",
            server,
            [{"name": "big.bin", "groups": ["g"], "size": 17_246_524_772}],
        )
        code = bake_slot.main(["1", "--slots", "8"], _env(manifest, tmp_path / "m", "g"))
        assert code == bake_slot.EXIT_TOO_LARGE
        assert server.requests == []
    assert "big.bin (" in caplog.text
    assert "network volume" in caplog.text
    assert "BAKE_MODEL_GROUPS" in caplog.text


def test_an_unknown_size_over_the_limit_is_caught_from_the_hub_headers(tmp_path: Path) -> None:
    """No size in the manifest: the hub's X-Linked-Size decides before any body is fetched."""
    files = {"big.bin": FakeFile(b"x" * 10, advertised_size=12_000_000_000)}
    with file_server(files) as server:
        manifest = _manifest(
            tmp_path / "models.toml", server, [{"name": "big.bin", "groups": ["g"]}]
        )
        code = bake_slot.main(["0", "--slots", "8"], _env(manifest, tmp_path / "m", "g"))
        assert code == bake_slot.EXIT_TOO_LARGE
        assert server.body_gets("big.bin") == []


def test_a_downloaded_file_over_the_limit_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When nothing announced the size, the file on disk is measured and refused."""
    monkeypatch.setattr(bake_slot, "LAYER_LIMIT_BYTES", 100)
    with file_server({"c.bin": FakeFile(b"c" * 500, linked=False)}) as server:
        manifest = _manifest(tmp_path / "models.toml", server, [{"name": "c.bin", "groups": ["g"]}])
        code = bake_slot.main(["0", "--slots", "2"], _env(manifest, tmp_path / "m", "g"))
    assert code == bake_slot.EXIT_TOO_LARGE
    assert not (tmp_path / "m" / "vae" / "c.bin").exists()


def test_more_models_than_slots_is_a_configuration_error(tmp_path: Path) -> None:
    """Three files into two slots fails in every slot with exit 2 (nothing is half baked)."""
    files = {f"{n}.bin": FakeFile(b"z") for n in "xyz"}
    with file_server(files) as server:
        manifest = _manifest(
            tmp_path / "models.toml", server, [{"name": n, "groups": ["g"]} for n in files]
        )
        env = _env(manifest, tmp_path / "m", "g")
        assert bake_slot.main(["0", "--slots", "2"], env) == 2
        assert server.requests == []


def test_no_groups_bakes_nothing_and_an_unknown_group_is_refused(tmp_path: Path) -> None:
    """An empty BAKE_MODEL_GROUPS is a no-op; a typo names the known groups."""
    with file_server({}) as server:
        manifest = _manifest(tmp_path / "models.toml", server, [{"name": "a", "groups": ["g"]}])
        assert bake_slot.main(["0", "--slots", "1"], _env(manifest, tmp_path / "m", "")) == 0
        assert bake_slot.main(["--finish"], _env(manifest, tmp_path / "m", "")) == 0
        assert not (tmp_path / "m" / ".baked").exists()
        assert bake_slot.main(["0", "--slots", "1"], _env(manifest, tmp_path / "m", "gg")) == 2


def test_the_script_runs_as_the_dockerfile_calls_it_and_keeps_the_token_secret(
    tmp_path: Path,
) -> None:
    """`python bake_slot.py 0 --slots 8` with a BuildKit-style secret file; token never printed."""
    secret = "hf_test_secret_value"
    files = {"gated.bin": FakeFile(b"g" * 300, token=secret)}
    with file_server(files) as server:
        manifest = _manifest(
            tmp_path / "models.toml", server, [{"name": "gated.bin", "groups": ["g"]}]
        )
        token_file = tmp_path / "hf_token"
        token_file.write_text(secret + "\n")
        done = subprocess.run(
            [
                sys.executable,
                str(ROOT / "image" / "bake_slot.py"),
                "0",
                "--slots",
                "8",
                "--token-file",
                str(token_file),
            ],
            env={
                **_env(manifest, tmp_path / "m", "g"),
                "PATH": "/usr/bin:/bin",
                "HF_ENDPOINT": server.base_url,
            },
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m" / "vae" / "gated.bin").stat().st_size == 300
    assert secret not in done.stdout + done.stderr
