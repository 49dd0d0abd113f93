"""The image definition lints clean and stays pinned: shellcheck, hadolint, pin invariants."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "image"
DOCKERFILE = IMAGE / "Dockerfile"


def _tool(name: str) -> str:
    """The linter from the project's environment (PyPI wheels), else from PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `uv sync` (it comes from the dev group)")
    return found


def _shell_scripts() -> list[Path]:
    scripts = sorted(IMAGE.rglob("*.sh"))
    scripts += sorted(p for p in (ROOT / "scripts").glob("*") if p.is_file())
    ci = ROOT / ".ci" / "run"
    if ci.exists():
        scripts.append(ci)
    return scripts


def test_there_are_scripts_to_lint() -> None:
    """The glob finds start.sh and the other helpers' scripts (a lint of nothing passes)."""
    names = {p.name for p in _shell_scripts()}
    assert {"start.sh", "download_models.sh", "r2_sync.sh"} <= names


@pytest.mark.parametrize("script", _shell_scripts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_scripts_pass_shellcheck(script: Path) -> None:
    """Every shell script in image/, scripts/ and .ci/run is shellcheck-clean."""
    done = subprocess.run(
        [_tool("shellcheck"), "--severity=style", "--external-sources", str(script)],
        capture_output=True,
        text=True,
        check=False,
        cwd=script.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_shell_scripts_are_strict_and_executable() -> None:
    """Each image script runs under `set -euo pipefail` and carries the executable bit."""
    for script in IMAGE.rglob("*.sh"):
        assert "set -euo pipefail" in script.read_text(), script
        assert script.stat().st_mode & 0o111, f"{script} is not executable"


def test_dockerfile_passes_hadolint() -> None:
    """hadolint finds nothing in image/Dockerfile (every ignore is inline and justified)."""
    done = subprocess.run(
        [_tool("hadolint"), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_ignores_are_explained() -> None:
    """Every `hadolint ignore` line follows a comment that says why."""
    lines = DOCKERFILE.read_text().splitlines()
    for index, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert lines[index - 1].startswith("#"), f"unexplained ignore at line {index + 1}"


def test_base_image_and_sources_are_pinned() -> None:
    """Exact base tag, and ComfyUI plus every custom node fetched at a 40-hex commit."""
    text = DOCKERFILE.read_text()
    for base in re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE):
        if base in {"base", "builder"}:
            continue
        assert ":" in base, base
        assert not base.endswith(":latest"), base
        assert re.search(r":\d+\.\d+\.\d+-", base), f"{base} is not an exact version tag"
    commits = dict(re.findall(r"^ARG (\w+_COMMIT)=(\S+)$", text, flags=re.MULTILINE))
    commits.pop("GIT_COMMIT", None)  # this repository's own revision, a label only
    assert {"COMFYUI_COMMIT", "VHS_COMMIT", "KJNODES_COMMIT", "WANVIDEOWRAPPER_COMMIT"} <= set(
        commits
    )
    assert {"WANANIMATEPREPROCESS_COMMIT", "TURBODIFFUSION_COMMIT"} <= set(commits)
    for name, value in commits.items():
        assert re.fullmatch(r"[0-9a-f]{40}", value), f"{name}={value} is not a commit"
    assert "git clone" not in text  # a clone follows a branch; fetch by commit instead


def test_torch_is_held_by_the_constraints() -> None:
    """torch pins in the Dockerfile equal constraints.txt, and node installs use -c."""
    constraints = dict(
        line.split("==", 1)
        for line in (IMAGE / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert {"torch", "torchvision", "torchaudio"} <= set(constraints)
    text = DOCKERFILE.read_text()
    for package in ("torch", "torchvision", "torchaudio"):
        assert f"{package}=={constraints[package]}" in text
    installer = (IMAGE / "install_node.sh").read_text()
    assert '-c "${constraints}"' in installer
    joined = text.replace("\\\n", " ")
    installs = [
        line for line in joined.splitlines() if "pip install" in line and not line.startswith("#")
    ]
    assert len(installs) >= 3
    for install in installs:
        assert "-c /opt/build/constraints.txt" in install, install


def test_worker_requirements_are_exact_pins() -> None:
    """Every requirement of the worker package is pinned with ==."""
    for raw in (IMAGE / "requirements.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][\w.]*", line), line


SECRET_LIKE = re.compile(r"TOKEN|SECRET|PASSWORD|KEY", flags=re.IGNORECASE)


def variable_names(dockerfile: str) -> list[tuple[str, str]]:
    """(ARG|ENV, name) for every variable every ARG/ENV instruction declares.

    Continuation lines are joined first, so each name of a multi-variable instruction counts;
    ``ENV name value`` (the legacy one-variable form) declares just its first word.
    """
    joined = re.sub(r"\\[ \t]*\n", " ", dockerfile)
    found: list[tuple[str, str]] = []
    for line in joined.splitlines():
        match = re.match(r"\s*(ARG|ENV)\s+(.*)$", line, flags=re.IGNORECASE)
        if match is None:
            continue
        keyword, words = match.group(1).upper(), shlex.split(match.group(2), comments=False)
        if keyword == "ENV" and words and "=" not in words[0]:
            words = words[:1]
        found.extend((keyword, word.split("=", 1)[0]) for word in words)
    return found


def test_variable_names_include_every_continuation_line() -> None:
    """A token-like name on the third line of a multi-variable ENV or ARG is still seen."""
    snippet = (
        "FROM scratch\n"
        "ARG A=1 B_KEY\n"
        "ENV MODE=pod \\\n"
        '    APP_DIR="/opt/my app" \\\n'
        "    GHCR_TOKEN=abc\n"
        "ENV LEGACY some value with TOKEN in it\n"
        'RUN echo "ENV NOT_ONE=1"\n'
    )
    names = variable_names(snippet)
    assert names == [
        ("ARG", "A"),
        ("ARG", "B_KEY"),
        ("ENV", "MODE"),
        ("ENV", "APP_DIR"),
        ("ENV", "GHCR_TOKEN"),
        ("ENV", "LEGACY"),
    ]
    assert [name for _, name in names if SECRET_LIKE.search(name)] == ["B_KEY", "GHCR_TOKEN"]


def test_no_secret_reaches_a_layer() -> None:
    """No ARG or ENV names a token or password; the HF token comes only as a BuildKit secret."""
    text = DOCKERFILE.read_text()
    names = variable_names(text)
    assert ("ENV", "PYTHONUNBUFFERED") in names  # a continuation-line name: the parse reached it
    for keyword, name in names:
        assert not SECRET_LIKE.search(name), f"{keyword} {name}"
    assert "--mount=type=secret,id=hf_token" in text
    assert "HF_TOKEN=" not in text.replace('HF_TOKEN="$(cat /run/secrets/hf_token', "")


def test_every_copied_file_exists_in_the_build_context() -> None:
    """COPY sources (outside --from stages) exist under image/, so the build cannot miss one."""
    text = DOCKERFILE.read_text()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, flags=re.MULTILINE):
        *sources, _dest = line.split()
        for source in sources:
            assert (IMAGE / source).exists(), f"COPY {source}: not in image/"


def test_dockerignore_keeps_the_copied_files() -> None:
    """.dockerignore excludes caches and model files, not the scripts or the worker package."""
    ignored = (IMAGE / ".dockerignore").read_text()
    assert "**/__pycache__" in ignored
    assert "**/*.safetensors" in ignored
    for needed in ("worker", "workflows", "start.sh", "models.toml", "requirements.txt"):
        assert f"\n{needed}\n" not in f"\n{ignored}\n"


def test_every_variable_the_worker_reads_is_documented() -> None:
    """Each env variable start.sh or the handler reads has a row in docs/worker-image.md."""
    docs = (ROOT / "docs" / "worker-image.md").read_text()
    start = (IMAGE / "start.sh").read_text()
    handler = (IMAGE / "worker" / "handler.py").read_text()
    names = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+):-", start))
    names |= set(re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z0-9_]+)"', handler))
    names -= {"PYTHONPATH", "PATH"}
    assert {"JOB_TIMEOUT_S", "COMFY_URL", "ENABLE_R2_SYNC", "MODE"} <= names
    missing = sorted(name for name in names if f"`{name}`" not in docs)
    assert not missing, f"undocumented in docs/worker-image.md: {missing}"
