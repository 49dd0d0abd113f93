"""The node lock (image/nodes.toml) is well formed, complete, and the installer obeys it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import install_nodes
import pytest
from worker import templates

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "image"
LOCK = IMAGE / "nodes.toml"
FACTS = IMAGE / "node_facts.json"


def _facts() -> dict[str, object]:
    return json.loads(FACTS.read_text())


def test_the_lock_parses_and_every_pin_is_a_full_commit_on_a_named_branch() -> None:
    """Every package has a 40-hex commit, a default branch, a dated commit and a reason."""
    packages = install_nodes.load_lock(LOCK)
    assert [p.kind for p in packages].count("comfyui") == 1
    for package in packages:
        assert re.fullmatch(r"[0-9a-f]{40}", package.commit), package.name
        assert package.branch in {"main", "master"}, package.name
        assert package.needed_by, package.name
        assert package.date.tzinfo is not None
        assert package.repo.startswith("https://github.com/")


def test_pins_were_less_than_a_year_old_when_recorded() -> None:
    """Each pin is under a year older than the branch head it was checked against."""
    for package in install_nodes.load_lock(LOCK):
        assert package.head_date is not None
        age = package.head_date - package.date
        assert 0 <= age.days < 365, f"{package.name} is {age.days} days behind its head"
        if package.head == package.commit:
            assert package.head_date == package.date


def test_the_node_facts_were_read_at_the_locked_commits() -> None:
    """node_facts.json says it came from exactly the commits the lock installs."""
    commits = _facts()["read_from"]["commits"]  # type: ignore[index]
    locked = {p.name: p.commit for p in install_nodes.load_lock(LOCK) if p.kind != "cuda_extension"}
    assert commits == locked


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("commit", "main", "full 40-hex commit"),
        ("commit", "efc2ffdf", "full 40-hex commit"),
        ("repo", "https://gitlab.com/a/b", "https://github.com"),
        ("kind", "plugin", "kind must be one of"),
        ("branch", "refs/pull/481/head", "default branch"),
        ("date", "yesterday", "ISO 8601"),
        ("date", "2026-01-01T00:00:00", "UTC offset"),
        ("needed_by", [], "nothing needs"),
        ("extra", ["loguru==0.7"], "bare names"),
        ("head_date", "2027-01-02T00:00:00+00:00", "days older than its branch head"),
    ],
)
def test_a_bad_lock_entry_is_refused_with_the_field_named(
    field: str, value: object, message: str
) -> None:
    """The installer refuses a branch, a short hash, a fork host or an unneeded package."""
    raw: dict[str, object] = {
        "name": "X",
        "kind": "custom_node",
        "repo": "https://github.com/a/X",
        "commit": "a" * 40,
        "branch": "main",
        "date": "2026-01-01T00:00:00+00:00",
        "head": "b" * 40,
        "head_date": "2026-02-01T00:00:00+00:00",
        "needed_by": ["a workflow"],
        "requirements": "",
        "extra": [],
        field: value,
    }
    with pytest.raises(install_nodes.LockError, match=message):
        install_nodes.parse_package(raw, 0)


def test_every_class_type_in_the_workflows_belongs_to_core_or_a_locked_package() -> None:
    """Nodes of image/workflows/ are ComfyUI core or come from a package in the lock."""
    facts = _facts()
    packages = facts["packages"]
    assert isinstance(packages, dict)
    owner = {name: pkg for pkg, names in packages.items() for name in names}
    locked = {p.name for p in install_nodes.load_lock(LOCK)}
    for path in sorted((IMAGE / "workflows").glob("*.json")):
        for node_id, node in json.loads(path.read_text()).items():
            package = owner.get(node["class_type"])
            assert package is not None, f"{path.name} node {node_id}: {node['class_type']}"
            assert package in locked, f"{path.name} node {node_id}: {package} is not locked"


def test_every_locked_package_is_needed_by_a_workflow_or_a_documented_feature() -> None:
    """No package is installed that no workflow, template or documented feature uses."""
    facts = _facts()
    packages = facts["packages"]
    features = facts["features"]
    assert isinstance(packages, dict)
    assert isinstance(features, dict)
    owner = {name: pkg for pkg, names in packages.items() for name in names}
    used: set[str] = {"ComfyUI"}
    for path in (IMAGE / "workflows").glob("*.json"):
        used |= {owner[n["class_type"]] for n in json.loads(path.read_text()).values()}
    for feature in features.values():
        assert isinstance(feature, dict)
        used |= {owner[name] for name in feature["class_types"]}
    used |= {"ComfyUI-VideoHelperSuite"}  # the handler collects VHS_VideoCombine `gifs`
    used |= {"turbodiffusion"}  # compiled kernels of Comfyui_turbodiffusion (nodes.toml)
    locked = {p.name for p in install_nodes.load_lock(LOCK)}
    assert locked == used
    docs = (ROOT / "docs" / "worker-image.md").read_text()
    for name in features:
        assert name in docs, f"feature {name} is not documented in docs/worker-image.md"


def test_the_turbo_templates_use_the_turbodiffusion_package() -> None:
    """The lock's `needed_by` names the templates that really use the package."""
    by_name = {p.name: p for p in install_nodes.load_lock(LOCK)}
    for template in ("wan22_turbo_i2v", "wan22_turbo_t2v"):
        assert template in templates.TEMPLATES
        assert any(template in reason for reason in by_name["Comfyui_turbodiffusion"].needed_by)


#: Third-party modules Comfyui_turbodiffusion imports on its load and run paths, with the pip
#: package of each, read at the locked commit (b109d08): its vendored imaginaire code imports
#: einops, loguru, omegaconf, pandas and pynvml, and easy_io's handler registry imports
#: imageio_video_handler.py, whose `import imageio` is unconditional. It has no requirements
#: file (imageio is only an optional `video` extra of its pyproject).
TURBO_LOAD_IMPORTS = {
    "einops": "einops",
    "loguru": "loguru",
    "omegaconf": "omegaconf",
    "pandas": "pandas",
    "pynvml": "nvidia-ml-py",
    "imageio": "imageio",
}


def _held_versions() -> dict[str, str]:
    held: dict[str, str] = {}
    for line in (IMAGE / "constraints.txt").read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            held[name.lower()] = version
    return held


def test_every_extra_is_held_at_one_version_by_constraints_txt() -> None:
    """A package the lock installs as `extra` never floats: constraints.txt pins it."""
    held = _held_versions()
    for package in install_nodes.load_lock(LOCK):
        for name in package.extra:
            assert name.lower() in held, f"{package.name}: extra {name} is not in constraints.txt"


def test_the_docs_name_every_extra_package_the_image_installs_for_a_node() -> None:
    """docs/worker-image.md names each `extra` of the lock and the version that holds it."""
    docs = (ROOT / "docs" / "worker-image.md").read_text()
    held = _held_versions()
    for package in install_nodes.load_lock(LOCK):
        for name in package.extra:
            assert f"`{name}`" in docs, f"{package.name}: extra {name} is not in the docs"
    assert f"`imageio` ({held['imageio']}" in docs


def test_turbodiffusions_load_time_imports_are_its_own_extras() -> None:
    """Every module the TurboDiffusion node imports at load time is installed for it, not by
    chance through another node's requirements (imageio came only via KJNodes' deps)."""
    by_name = {p.name: p for p in install_nodes.load_lock(LOCK)}
    extra = set(by_name["Comfyui_turbodiffusion"].extra)
    missing = {pip for pip in TURBO_LOAD_IMPORTS.values() if pip not in extra}
    assert not missing, f"Comfyui_turbodiffusion's extra lacks {sorted(missing)}"


# -- the installer against local git repositories ------------------------------------------


def _git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env
    )
    return done.stdout.strip()


def _repo(path: Path, files: dict[str, str]) -> list[str]:
    """A git repository with two commits; returns their hashes (old, new)."""
    path.mkdir(parents=True)
    _git("init", "-q", "-b", "main", cwd=path)
    _git("config", "user.email", "t@example.com", cwd=path)
    _git("config", "user.name", "t", cwd=path)
    _git("config", "uploadpack.allowReachableSHA1InWant", "true", cwd=path)
    commits = []
    for round_ in ("old", "new"):
        for name, text in files.items():
            (path / name).write_text(f"{text} {round_}\n")
        _git("add", ".", cwd=path)
        _git("commit", "-q", "-m", round_, cwd=path)
        commits.append(_git("rev-parse", "HEAD", cwd=path))
    return commits


def _lock(path: Path, entries: list[dict[str, object]]) -> Path:
    lines = []
    for entry in entries:
        lines.append("[[package]]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in entry.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def pip_stub(tmp_path: Path) -> tuple[str, Path]:
    """A pip that records its argv (one line per call) instead of installing."""
    calls = tmp_path / "pip-calls"
    stub = tmp_path / "pip"
    stub.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >>"{calls}"\n')
    stub.chmod(0o755)
    return str(stub), calls


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_install_checks_out_exactly_the_locked_commit_and_pins_every_pip_run(
    tmp_path: Path, pip_stub: tuple[str, Path]
) -> None:
    """The old commit is installed even though main moved on; pip runs with both -c files."""
    core_old, _ = _repo(tmp_path / "core", {"requirements.txt": "# core", "main.py": "#"})
    node_old, _ = _repo(tmp_path / "node", {"requirements.txt": "# node", "nodes.py": "#"})
    common = {
        "branch": "main",
        "date": "2026-01-01T00:00:00+00:00",
        "head": "c" * 40,
        "head_date": "2026-01-02T00:00:00+00:00",
        "needed_by": ["t"],
    }
    lock = _lock(
        tmp_path / "image" / "nodes.toml",
        [
            {
                "name": "ComfyUI",
                "kind": "comfyui",
                "repo": "https://github.com/a/ComfyUI",
                "commit": core_old,
                "requirements": "requirements.txt",
                "extra": [],
                **common,
            },
            {
                "name": "Node",
                "kind": "custom_node",
                "repo": "https://github.com/a/Node",
                "commit": node_old,
                "requirements": "requirements.txt",
                "extra": ["loguru"],
                **common,
            },
        ],
    )
    for name in ("torch.txt", "constraints.txt"):
        (lock.parent / name).write_text("x==1\n")
    # The lock names GitHub; the test serves the same commits from local repositories.
    config = tmp_path / "gitconfig"
    config.write_text(
        f'[url "{tmp_path / "core"}"]\n\tinsteadOf = https://github.com/a/ComfyUI\n'
        f'[url "{tmp_path / "node"}"]\n\tinsteadOf = https://github.com/a/Node\n'
    )
    target = tmp_path / "opt" / "ComfyUI"
    pip, calls = pip_stub
    done = subprocess.run(
        [
            sys.executable,
            str(IMAGE / "install_nodes.py"),
            "--lock",
            str(lock),
            "--pip",
            pip,
            "install",
            "--comfyui-dir",
            str(target),
        ],
        env={"GIT_CONFIG_GLOBAL": str(config), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (target / "main.py").read_text() == "# old\n"
    assert (target / "custom_nodes" / "Node" / "nodes.py").read_text() == "# old\n"
    assert not (target / ".git").exists()
    [call] = calls.read_text().splitlines()
    assert f"-c {lock.parent / 'torch.txt'} -c {lock.parent / 'constraints.txt'}" in call
    assert f"-r {target / 'requirements.txt'}" in call
    assert f"-r {target / 'custom_nodes' / 'Node' / 'requirements.txt'}" in call
    assert call.endswith(" loguru")


def test_a_malformed_lock_stops_the_build_with_exit_2(tmp_path: Path) -> None:
    """A short hash in the lock fails before anything is fetched."""
    lock = _lock(
        tmp_path / "nodes.toml",
        [
            {
                "name": "ComfyUI",
                "kind": "comfyui",
                "repo": "https://github.com/a/ComfyUI",
                "commit": "2e40f31",
                "branch": "master",
                "date": "2026-01-01T00:00:00+00:00",
                "needed_by": ["t"],
                "requirements": "",
                "extra": [],
            }
        ],
    )
    done = subprocess.run(
        [sys.executable, str(IMAGE / "install_nodes.py"), "--lock", str(lock), "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "full 40-hex commit" in done.stderr


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_cuda_extension_is_built_from_its_commit_with_its_submodules(
    tmp_path: Path, pip_stub: tuple[str, Path]
) -> None:
    """`wheel NAME` checks out the commit and its submodule gitlink, then runs pip wheel."""
    _repo(tmp_path / "cutlass", {"cutlass.h": "// cutlass"})
    ext = tmp_path / "ext"
    ext_old, _ = _repo(ext, {"setup.py": "#"})
    # The lock and .gitmodules name GitHub; every URL is served from local repositories.
    config = tmp_path / "gitconfig"
    config.write_text(
        f'[url "{tmp_path / "cutlass"}"]\n\tinsteadOf = https://github.com/a/cutlass\n'
        f'[url "{ext}"]\n\tinsteadOf = https://github.com/a/ext\n'
        '[protocol "file"]\n\tallow = always\n'
    )
    git_env = {"GIT_CONFIG_GLOBAL": str(config), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    submodule = ("submodule", "add", "-q", "https://github.com/a/cutlass", "ops/cutlass")
    _git(*submodule, cwd=ext, env=git_env)
    _git("commit", "-q", "-m", "cutlass", cwd=ext, env=git_env)
    pinned = _git("rev-parse", "HEAD", cwd=ext)
    lock = _lock(
        tmp_path / "image" / "nodes.toml",
        [
            {
                "name": "ComfyUI",
                "kind": "comfyui",
                "repo": "https://github.com/a/ComfyUI",
                "commit": "e" * 40,
                "branch": "main",
                "date": "2026-01-01T00:00:00+00:00",
                "head": "e" * 40,
                "head_date": "2026-01-01T00:00:00+00:00",
                "needed_by": ["t"],
                "requirements": "",
                "extra": [],
            },
            {
                "name": "ext",
                "kind": "cuda_extension",
                "repo": "https://github.com/a/ext",
                "commit": pinned,
                "branch": "main",
                "date": "2026-01-01T00:00:00+00:00",
                "head": pinned,
                "head_date": "2026-01-01T00:00:00+00:00",
                "needed_by": ["t"],
                "requirements": "",
                "extra": [],
                "submodules": True,
            },
        ],
    )
    for name in ("torch.txt", "constraints.txt"):
        (lock.parent / name).write_text("x==1\n")
    pip, calls = pip_stub
    # The pip stub also proves the submodule was there when the wheel was built.
    Path(pip).write_text(
        f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >>"{calls}"\n'
        f'src="${{@: -1}}"; cat "$src/ops/cutlass/cutlass.h" >>"{calls}"\n'
    )
    done = subprocess.run(
        [
            sys.executable,
            str(IMAGE / "install_nodes.py"),
            "--lock",
            str(lock),
            "--pip",
            pip,
            "wheel",
            "ext",
            "--out",
            str(tmp_path / "wheels"),
        ],
        env=git_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    call, header = calls.read_text().splitlines()
    assert call.startswith("wheel --no-cache-dir --no-deps --no-build-isolation")
    assert f"-w {tmp_path / 'wheels'}" in call
    assert header == "// cutlass new"
    assert ext_old != pinned
