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


def _args(text: str) -> dict[str, str]:
    """Default value of every ARG (global or per stage) that declares one."""
    return dict(re.findall(r"^ARG (\w+)=(\S*)$", text, flags=re.MULTILINE))


def _stages(text: str) -> dict[str, str]:
    """Stage name -> the Dockerfile text of that stage."""
    parts = re.split(r"^(?=FROM )", text, flags=re.MULTILINE)
    stages = {}
    for part in parts[1:]:
        match = re.match(r"FROM \S+ AS (\S+)", part)
        assert match, part.splitlines()[0]
        stages[match.group(1)] = part
    return stages


def test_base_images_are_exact_tags_derived_from_the_one_cuda_version() -> None:
    """Every external FROM resolves to an exact nvidia/cuda tag built from ARG CUDA_VERSION."""
    text = DOCKERFILE.read_text()
    declared = re.findall(r"^ARG CUDA_VERSION=(\d+\.\d+)$", text, flags=re.MULTILINE)
    assert len(declared) == 1, "exactly one ARG CUDA_VERSION=<major.minor> declaration"
    cuda = declared[0]
    stages = set(_stages(text))
    external = [b for b in re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE) if b not in stages]
    assert external
    for base in external:
        assert "${CUDA_VERSION}" in base, base
        resolved = base.replace("${CUDA_VERSION}", cuda)
        assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-(base|devel)-ubuntu24\.04", resolved)
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for literal in (cuda, "cu" + cuda.replace(".", "")):
        assert literal not in code.replace(f"ARG CUDA_VERSION={cuda}", ""), literal


def test_the_dockerfile_holds_no_copy_of_any_pin() -> None:
    """ComfyUI and the nodes come from nodes.toml via install_nodes.py: no commit, no clone."""
    text = DOCKERFILE.read_text()
    assert not re.search(r"\b[0-9a-f]{40}\b", text)
    assert not re.search(r"^ARG \w+_COMMIT", text, flags=re.MULTILINE)
    assert "git clone" not in text
    assert "install_nodes.py install" in text
    assert "install_nodes.py wheel turbodiffusion" in text
    for package in ("torch==", "torchvision==", "torchaudio=="):
        assert package not in text


def test_every_stage_that_installs_from_the_lock_copies_the_lock_first() -> None:
    """install_nodes.py reads nodes.toml beside it: each stage running it copies both (and
    the constraint files) into /opt/build/ before the RUN, so the lock is what gets built."""
    stages = _stages(DOCKERFILE.read_text())
    running = {
        name: text for name, text in stages.items() if "RUN" in text and "install_nodes.py " in text
    }
    assert set(running) == {"turbo-ops", "builder"}
    for name, text in running.items():
        copy = re.search(r"^COPY (?!--from)(.+) /opt/build/$", text, flags=re.MULTILINE)
        assert copy is not None, name
        assert set(copy.group(1).split()) >= {
            "nodes.toml",
            "install_nodes.py",
            "torch.txt",
            "constraints.txt",
        }, name
        assert copy.start() < text.index("python /opt/build/install_nodes.py"), name


def test_torch_is_held_by_torch_txt_in_every_pip_install() -> None:
    """torch.txt pins exactly; every other pip install runs under both constraint files."""
    torch = dict(
        line.split("==", 1)
        for line in (IMAGE / "torch.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert set(torch) == {"torch", "torchvision", "torchaudio"}
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    installs = [
        line for line in text.splitlines() if "pip install" in line and not line.startswith("#")
    ]
    assert len(installs) >= 3
    for install in installs:
        if "-r /opt/build/torch.txt" in install:
            assert "download.pytorch.org/whl/cu" in install
        elif "--no-deps /opt/wheels/" in install:
            continue  # the locally built TurboDiffusion wheel, dependencies not wanted
        else:
            assert "-c /opt/build/torch.txt -c /opt/build/constraints.txt" in install, install
    installer = (IMAGE / "install_nodes.py").read_text()
    assert '"torch.txt"' in installer
    assert '"constraints.txt"' in installer


def test_no_label_build_args_and_static_labels_come_last() -> None:
    """Labels come from the build (docker_build.Image); no version/commit/source ARGs."""
    text = DOCKERFILE.read_text()
    for arg in ("IMAGE_VERSION", "GIT_COMMIT", "IMAGE_SOURCE"):
        assert not re.search(rf"^ARG {arg}\b", text, flags=re.MULTILINE), arg
    runtime = _stages(text)["runtime"]
    lines = runtime.splitlines()
    label = next(i for i, line in enumerate(lines) if line.startswith("LABEL"))
    heavy = [i for i, line in enumerate(lines) if line.startswith(("RUN", "COPY"))]
    assert label > max(heavy)
    assert re.findall(r"^ARG (\w+)", runtime, flags=re.MULTILINE) == ["BAKE_MODEL_GROUPS"]


def test_runtime_carries_triton_needs_nginx_and_no_ssh_host_keys() -> None:
    """gcc + Python headers (python stage), nginx, and /etc/ssh/ssh_host_* deleted."""
    stages = _stages(DOCKERFILE.read_text())
    assert re.search(r"FROM \S+ AS runtime", stages["runtime"]).group(0).startswith("FROM python")
    assert "python3.12-dev" in stages["python"]
    assert re.search(r"\bgcc\b", stages["python"])
    assert "nginx" in stages["runtime"]
    assert "rm -f /etc/ssh/ssh_host_*" in stages["runtime"]
    assert "COPY proxy/ /opt/worker/proxy/" in stages["runtime"]
    assert "cudnn" not in stages["python"].split("\n", 1)[0]


def test_our_code_is_copied_after_torch_nodes_and_models() -> None:
    """A worker or script change rebuilds neither torch, the nodes, nor a model layer."""
    stages = _stages(DOCKERFILE.read_text())
    for name in ("python", "torch", "turbo-ops", "builder"):
        assert "worker/" not in stages[name], name
        assert "start.sh" not in stages[name], name
    runtime = stages["runtime"]
    last_bake = runtime.rindex("bake_slot.py --finish")
    for copied in ("COPY worker/ ", "COPY workflows/", "COPY start.sh"):
        assert runtime.index(copied) > last_bake, copied
    assert runtime.index("COPY --from=builder /opt/venv") < runtime.index("bake_slot.py 0")


def test_python_is_byte_compiled_at_build_time() -> None:
    """site-packages, ComfyUI and the worker are compiled in the image, not at cold start."""
    stages = _stages(DOCKERFILE.read_text())
    assert "compileall" in stages["builder"]
    assert "/opt/venv/lib/python3.12/site-packages /opt/ComfyUI" in stages["builder"]
    assert "compileall" in stages["runtime"]
    assert "PYTHONDONTWRITEBYTECODE=1" in stages["python"]


def test_models_are_baked_one_per_layer_in_every_slot() -> None:
    """Slots 0..N-1 each a RUN with the hf_token secret, then --finish; N matches --slots."""
    text = DOCKERFILE.read_text()
    slots = re.findall(
        r"^RUN --mount=type=secret,id=hf_token,required=false "
        r"python /opt/worker/bake_slot.py (\d+) --slots (\d+)$",
        text,
        flags=re.MULTILINE,
    )
    count = int(slots[0][1])
    assert [int(s) for s, _ in slots] == list(range(count))
    assert {n for _, n in slots} == {str(count)}
    assert "RUN python /opt/worker/bake_slot.py --finish" in text


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
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "HF_TOKEN" not in code  # bake_slot.py reads the secret file itself


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
    needed_files = ("worker", "workflows", "start.sh", "models.toml", "requirements.txt")
    for needed in (*needed_files, "nodes.toml", "torch.txt", "install_nodes.py", "proxy"):
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


@pytest.mark.parametrize("version", ["3.11", "3.12"])
def test_the_worker_package_lints_and_type_checks_for_the_image_python(
    version: str, tmp_path: Path
) -> None:
    """image/worker passes ruff and strict mypy for 3.12 (the image) as well as 3.11 (tests)."""
    target = "py" + version.replace(".", "")
    ruff = subprocess.run(
        [_tool("ruff"), "check", "--target-version", target, "image/worker"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    mypy = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--python-version",
            version,
            "--cache-dir",
            str(tmp_path / "mypy"),
            "image/worker",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert mypy.returncode == 0, mypy.stdout + mypy.stderr
    assert "Success" in mypy.stdout


def _copies(stage: str) -> list[tuple[list[str], str]]:
    """``(sources, destination)`` of every COPY from the build context in one stage."""
    found = []
    for line in stage.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            found.append((words[1:-1], words[-1]))
    return found


def test_every_file_a_copied_script_sources_is_copied_beside_it() -> None:
    """download_models.sh and r2_sync.sh source worker_python.sh from their own folder: an
    image that copied one without the other would fail only at pod start."""
    text = (IMAGE / "Dockerfile").read_text(encoding="utf-8")
    checked = 0
    for name, stage in _stages(text).items():
        copies = _copies(stage)
        for sources, destination in copies:
            for script in (s for s in sources if s.endswith(".sh")):
                body = (IMAGE / script).read_text(encoding="utf-8")
                for sourced in re.findall(r'^\s*(?:source|\.) "\$\{here\}/([^"]+)"', body, re.M):
                    checked += 1
                    beside = [d for s, d in copies if sourced in s]
                    assert destination in beside, (
                        f"stage {name}: {script} (to {destination}) sources {sourced}, "
                        f"which this stage copies to {beside or 'nowhere'}"
                    )
    assert checked >= 2, "no sourcing script found: the check would pass on nothing"
