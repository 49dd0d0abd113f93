"""Promotion by gate record: staging writes a record tied to the digest it tested; pin-digest
and the prod deploy's check refuse a digest without a passing record or that the registry
lacks; the promotion PR is built from main and re-running it is harmless.

Against a loopback OCI registry (tests/fakes/oci_registry.py), a local bare git repository as
``origin`` and a stand-in ``gh`` on PATH.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.promote import (
    PromoteError,
    PromotionRefusedError,
    build_record,
    extract_digest,
    pin_digest,
    record_tag,
    verify,
    write_record,
)
from ops.registry import Registry
from tests.fakes.oci_registry import Registry as RegistryDouble
from tests.fakes.oci_registry import oci_registry
from tests.ops.conftest import clone_with_origin, git, invoke_json, standins_on_path

REPO = Path(__file__).resolve().parents[2]
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
IMAGE = "acme/comfyui-worker"
PUSH_TOKEN = "ghs_push-token"  # a local double's credentials, not real ones
PULL_TOKEN = "ghs_pull-token"
EXAMPLE_DIGEST = "sha256:5f0c2d5a3c1e9b7d4a6f8e0b2c4d6e8f0a1b3c5d7e9f1a3b5c7d9e1f3a5b7c9d"
PASSED = {"command": "smoke", "ok": True, "checks": [{"name": "txt2img", "status": "pass"}]}
CANARY_PASSED = {"command": "canary", "ok": True, "summary": {"requests": 50}, "checks": []}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory with Pulumi.yaml and a prod stack file with comments."""
    (tmp_path / "Pulumi.yaml").write_text("name: comfyui-runpod\nruntime: python\n")
    (tmp_path / "Pulumi.prod.yaml").write_text(
        "# production\n"
        "config:\n"
        "  comfyui-runpod:image.owner: acme  # GHCR owner\n"
        f"  comfyui-runpod:image.digest: {DIGEST_A}\n"
        "  comfyui-runpod:rollout.provider: comfyui\n"
    )
    return tmp_path


@pytest.fixture
def ghcr() -> Iterator[RegistryDouble]:
    with oci_registry() as double:
        double.credentials = {PUSH_TOKEN: {"pull", "push"}, PULL_TOKEN: {"pull"}}
        yield double


def registry(double: RegistryDouble, token: str = PUSH_TOKEN, image: str = IMAGE) -> Registry:
    return Registry(image, base_url=double.base_url, username="ci", token=token)


def env(double: RegistryDouble, token: str = PULL_TOKEN) -> dict[str, str | None]:
    return {"OCI_REGISTRY_URL": double.base_url, "GHCR_TOKEN": token, "GHCR_USERNAME": "ci"}


def passing_record(digest: str, *, now: float = 1_800_000_000) -> dict[str, Any]:
    return build_record(
        digest,
        repository=f"ghcr.io/{IMAGE}",
        smoke=PASSED,
        canary=CANARY_PASSED,
        run_url="https://github.com/acme/comfyui-runpod/actions/runs/7",
        commit="c0ffee",
        now=now,
    )


# --------------------------------------------------------------------------- pinning


def test_pin_replaces_only_the_digest_line(project: Path) -> None:
    """The new digest lands on the same line; every other line, comments included, is kept."""
    stack = project / "Pulumi.prod.yaml"
    before = stack.read_text().splitlines()
    result = pin_digest(stack, DIGEST_B)
    after = stack.read_text().splitlines()
    assert result.changed
    assert result.previous == DIGEST_A
    changed = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert changed == [
        (f"  comfyui-runpod:image.digest: {DIGEST_A}", f"  comfyui-runpod:image.digest: {DIGEST_B}")
    ]


def test_pin_is_idempotent(project: Path) -> None:
    """Pinning the digest already there changes nothing."""
    assert not pin_digest(project / "Pulumi.prod.yaml", DIGEST_A).changed


def test_pin_adds_the_key_when_the_stack_builds_its_image(project: Path) -> None:
    """A stack file without image.digest gets it at the end of config:, same indent, valid YAML."""
    stack = project / "Pulumi.prod.yaml"
    stack.write_text(
        "config:\n"
        "    comfyui-runpod:image.owner: acme\n"
        "    comfyui-runpod:app.token:\n"
        "        secure: AAABBB\n"
        "\n"
        "# trailing comment\n"
    )
    pin_digest(stack, DIGEST_B)
    text = stack.read_text()
    assert f"    comfyui-runpod:image.digest: {DIGEST_B}\n" in text
    assert text.endswith("# trailing comment\n")
    config = yaml.safe_load(text)["config"]
    assert config["comfyui-runpod:image.digest"] == DIGEST_B
    assert config["comfyui-runpod:app.token"] == {"secure": "AAABBB"}


def test_extract_digest_accepts_a_full_reference_and_rejects_garbage() -> None:
    """ghcr.io/o/i@sha256:<hex> yields the digest; tags or short hashes are refused."""
    assert extract_digest(f"ghcr.io/acme/comfyui-worker@{DIGEST_A}") == DIGEST_A
    for bad in ("ghcr.io/acme/comfyui-worker:latest", "sha256:abc", ""):
        with pytest.raises(PromoteError):
            extract_digest(bad)


def test_pinned_repository_prod_stack_still_passes_config_validation(tmp_path: Path) -> None:
    """Pinning the real Pulumi.prod.yaml keeps it a stack file the program's config accepts."""
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copy(REPO / "Pulumi.prod.yaml", tmp_path / "Pulumi.prod.yaml")
    result = pin_digest(tmp_path / "Pulumi.prod.yaml", DIGEST_B)
    config = yaml.safe_load((tmp_path / "Pulumi.prod.yaml").read_text())["config"]
    assert config[result.key] == DIGEST_B
    assert result.key == "comfyui-runpod:image.digest"


# --------------------------------------------------------------------------- records


def test_a_passing_run_writes_a_record_tied_to_the_digest(ghcr: RegistryDouble) -> None:
    """The record is the tag sha256-<hex>.gates; verify reads it back (the blob through the CDN
    redirect, without credentials there) and it names the digest, the results and the run."""
    digest = ghcr.push_image(IMAGE, "staging")
    tag = write_record(registry(ghcr), passing_record(digest))
    assert tag == record_tag(digest) == f"sha256-{digest[7:]}.gates"
    assert tag in ghcr.tags[IMAGE]
    record = verify(registry(ghcr, PULL_TOKEN), digest)
    assert record.digest == digest
    assert record.document["runUrl"].endswith("/actions/runs/7")
    assert record.document["gates"]["canary"]["summary"] == {"requests": 50}
    cdn = [r for r in ghcr.requests if r[1].startswith(f"/{IMAGE}/sha256:")]
    assert cdn
    assert all(not authorised for _, _, authorised in cdn)


def test_failed_gates_write_no_record(ghcr: RegistryDouble) -> None:
    """A canary that did not pass: build_record refuses, so nothing can be promoted."""
    digest = ghcr.push_image(IMAGE)
    with pytest.raises(PromotionRefusedError, match="canary did not pass"):
        build_record(
            digest,
            repository=f"ghcr.io/{IMAGE}",
            smoke=PASSED,
            canary={"ok": False},
            run_url="u",
            commit="c",
        )


def test_rewriting_the_same_record_is_harmless(ghcr: RegistryDouble) -> None:
    """A re-run writes the same tag again; still one record, still verifiable."""
    digest = ghcr.push_image(IMAGE)
    for _ in range(2):
        write_record(registry(ghcr), passing_record(digest))
    assert [t for t in ghcr.tags[IMAGE] if t.endswith(".gates")] == [record_tag(digest)]
    assert verify(registry(ghcr), digest).passed


def test_verify_refuses_a_digest_without_a_record_and_says_so(ghcr: RegistryDouble) -> None:
    """The image exists but staging never passed with it."""
    digest = ghcr.push_image(IMAGE)
    with pytest.raises(PromotionRefusedError) as refused:
        verify(registry(ghcr), digest)
    assert f"no gate record for {digest}" in str(refused.value)
    assert "has no image" not in str(refused.value)


def test_verify_refuses_a_digest_the_registry_does_not_have(ghcr: RegistryDouble) -> None:
    """A record survives but the image was deleted: the refusal names the missing image."""
    digest = ghcr.push_image(IMAGE)
    write_record(registry(ghcr), passing_record(digest))
    ghcr.delete_image(IMAGE, digest)
    with pytest.raises(PromotionRefusedError) as refused:
        verify(registry(ghcr), digest)
    assert f"has no image {digest}" in str(refused.value)
    assert "no gate record" not in str(refused.value)


def test_a_pull_only_token_cannot_write_a_record(ghcr: RegistryDouble) -> None:
    """The error names the call, the host, the status and GHCR's code."""
    digest = ghcr.push_image(IMAGE)
    with pytest.raises(Exception, match=r"answered 403 from 127\.0\.0\.1:\d+: DENIED"):
        write_record(registry(ghcr, PULL_TOKEN), passing_record(digest))


# --------------------------------------------------------------------------- commands


def test_pin_digest_refuses_a_digest_with_no_passing_record(
    ghcr: RegistryDouble, project: Path
) -> None:
    """`ops pin-digest --digest X` without a record: exit 2, the file untouched."""
    digest = ghcr.push_image(IMAGE)
    stack = project / "Pulumi.prod.yaml"
    before = stack.read_text()
    code, doc = invoke_json(
        ["pin-digest", "--stack-file", str(stack), "--digest", digest], env(ghcr)
    )
    assert code == 2
    assert f"no gate record for {digest}" in doc["error"]
    assert stack.read_text() == before


def test_pin_digest_takes_the_newest_passing_record(ghcr: RegistryDouble, project: Path) -> None:
    """Without --digest: the newest record that passed (staging's outputs are not needed)."""
    older, newer, untested = (ghcr.push_image(IMAGE) for _ in range(3))
    write_record(registry(ghcr), passing_record(older, now=1_800_000_000))
    write_record(registry(ghcr), passing_record(newer, now=1_800_000_600))
    stack = project / "Pulumi.prod.yaml"
    code, doc = invoke_json(["pin-digest", "--stack-file", str(stack)], env(ghcr))
    assert code == 0, doc
    assert doc["digest"] == newer != untested
    assert f"comfyui-runpod:image.digest: {newer}" in stack.read_text()
    assert doc["runUrl"].endswith("/actions/runs/7")


def test_pin_digest_from_staging_outputs_needs_its_record(
    ghcr: RegistryDouble, project: Path
) -> None:
    """Staging's imageDigest piped in is pinned only when it has a passing record."""
    digest = ghcr.push_image(IMAGE)
    stack = project / "Pulumi.prod.yaml"
    outputs = json.dumps({"imageDigest": digest, "imageRef": f"ghcr.io/{IMAGE}@{digest}"})
    args = ["pin-digest", "--stack-file", str(stack), "--outputs", "-"]
    assert invoke_json(args, env(ghcr), stdin=outputs)[0] == 2
    write_record(registry(ghcr), passing_record(digest))
    code, doc = invoke_json(args, env(ghcr), stdin=outputs)
    assert (code, doc["changed"], doc["digest"]) == (0, True, digest)


def test_the_prod_deploy_check_refuses_an_unrecorded_pin(
    ghcr: RegistryDouble, project: Path
) -> None:
    """`ops promote verify`: exit 1 naming what is missing; exit 0 once the record exists."""
    digest = ghcr.push_image(IMAGE)
    stack = project / "Pulumi.prod.yaml"
    pin_digest(stack, digest)
    code, doc = invoke_json(["promote", "verify", "--stack-file", str(stack)], env(ghcr))
    assert code == 1
    (problem,) = doc["problems"]
    assert problem.startswith(f"no gate record for {digest}")
    write_record(registry(ghcr), passing_record(digest))
    code, doc = invoke_json(["promote", "verify", "--stack-file", str(stack)], env(ghcr))
    assert (code, doc["digest"]) == (0, digest)
    pin_digest(stack, DIGEST_B)  # a digest the registry never had
    code, doc = invoke_json(["promote", "verify", "--stack-file", str(stack)], env(ghcr))
    assert code == 1
    assert f"has no image {DIGEST_B}" in doc["problems"][0]
    assert f"no gate record for {DIGEST_B}" in doc["problems"][0]


def test_promote_record_writes_only_after_both_gates_passed(
    ghcr: RegistryDouble, tmp_path: Path
) -> None:
    """`ops promote record` reads staging's outputs and this run's smoke and canary JSON."""
    digest = ghcr.push_image(IMAGE)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"imageDigest": digest, "imageRef": f"ghcr.io/{IMAGE}@{digest}"}))
    smoke, canary = tmp_path / "smoke.json", tmp_path / "canary.json"
    smoke.write_text(json.dumps(PASSED))
    canary.write_text(json.dumps({**CANARY_PASSED, "ok": False}))
    args = ["promote", "record", "--outputs", str(outputs), "--smoke", str(smoke)]
    args += ["--canary", str(canary), "--run-url", "https://ci/run/9"]
    code, doc = invoke_json(args, env(ghcr, PUSH_TOKEN))
    assert code == 2
    assert "canary did not pass" in doc["error"]
    assert record_tag(digest) not in ghcr.tags.get(IMAGE, {})
    canary.write_text(json.dumps(CANARY_PASSED))
    code, doc = invoke_json(args, env(ghcr, PUSH_TOKEN))
    assert (code, doc["tag"]) == (0, record_tag(digest))
    assert verify(registry(ghcr), digest).document["runUrl"] == "https://ci/run/9"


# --------------------------------------------------------------------------- the promotion PR

GH_STANDIN = """\
import json, os, sys
args = sys.argv[1:]
with open(os.environ["STANDIN_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
state = os.environ["GH_STATE"]
prs = json.load(open(state)) if os.path.exists(state) else []
if args[:2] == ["pr", "list"]:
    head = args[args.index("--head") + 1]
    print(json.dumps([p for p in prs if p["head"] == head]))
elif args[:2] == ["pr", "create"]:
    head = args[args.index("--head") + 1]
    url = "https://github.com/acme/comfyui-runpod/pull/%d" % (len(prs) + 1)
    prs.append({"number": len(prs) + 1, "url": url, "head": head})
    json.dump(prs, open(state, "w"))
    print(url)
"""


@pytest.fixture
def clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clone of a bare `origin` whose main holds the project, as the working directory, and
    a stand-in `gh` first on PATH."""
    monkeypatch.setenv("STANDIN_LOG", str(tmp_path / "gh.jsonl"))
    monkeypatch.setenv("GH_STATE", str(tmp_path / "prs.json"))
    work = clone_with_origin(tmp_path, monkeypatch, ("Pulumi.yaml", "Pulumi.prod.yaml"))
    standins_on_path(tmp_path, monkeypatch, {"gh": GH_STANDIN})
    monkeypatch.chdir(work)
    return work


def gh_calls(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "gh.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_the_promotion_pr_is_built_from_main_and_a_rerun_is_harmless(
    ghcr: RegistryDouble, clone: Path, tmp_path: Path
) -> None:
    """The PR branch holds main plus the one digest line (a dirty working copy never leaks);
    re-running updates the same branch without a second PR; once merged, nothing happens."""
    image = "acme-games/comfyui-worker"  # the repository's Pulumi.prod.yaml
    digest = ghcr.push_image(image)
    write_record(registry(ghcr, image=image), passing_record(digest))
    (clone / "Pulumi.prod.yaml").write_text(
        (clone / "Pulumi.prod.yaml").read_text() + "  comfyui-runpod:app.githubToken:\n"
        "    secure: v1:LOCAL-ONLY\n"
    )
    args = ["promote", "open-pr", "--stack-file", "Pulumi.prod.yaml"]
    code, doc = invoke_json(args, env(ghcr))
    assert code == 0, doc
    assert (doc["digest"], doc["changed"], doc["existing"]) == (digest, True, False)
    branch = f"promote/{digest[7:19]}"
    git(clone, "fetch", "--quiet", "origin")
    diff = git(clone, "diff", "origin/main", f"origin/{branch}", "--", ".")
    changed = [
        line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    assert changed == [
        f"-  comfyui-runpod:image.digest: {EXAMPLE_DIGEST}",
        f"+  comfyui-runpod:image.digest: {digest}",
    ]
    assert "LOCAL-ONLY" not in git(clone, "show", f"origin/{branch}:Pulumi.prod.yaml")
    again = invoke_json(args, env(ghcr))[1]
    assert (again["changed"], again["existing"], again["url"]) == (True, True, doc["url"])
    creates = [call for call in gh_calls(tmp_path) if call[:2] == ["pr", "create"]]
    assert len(creates) == 1
    git(clone, "push", "--quiet", "origin", f"origin/{branch}:refs/heads/main")  # merged
    merged = invoke_json(args, env(ghcr))[1]
    assert (merged["changed"], merged["url"]) == (False, None)
    assert len([c for c in gh_calls(tmp_path) if c[:2] == ["pr", "create"]]) == 1
