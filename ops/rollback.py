"""The fast rollback: send the app back to Scenario by changing only the provider flag.

Owns: ``scripts/rollback <stack> [--undo] [--dry-run] [--yes]`` (``python -m ops.rollback``
from the project directory). It sets ``rollout.provider`` in the stack's config
(``scenario``; ``comfyui`` with ``--undo``) and runs ``pulumi up --target`` on exactly two
resources: the Workers KV value the app reads per request and the GitHub environment
variable ``IMAGE_GENERATION_PROVIDER``. Nothing on RunPod, R2 or GHCR is planned or touched,
so it ends in seconds; the app sees the new flag everywhere within about 60 s (Workers KV's
edge caches). It refuses to send traffic to Scenario while Scenario's credentials are not
configured for the stack. ``--dry-run`` changes nothing: it sets the value in a copy of the
stack file and previews the targeted update against that copy.

Then it puts the same one-line change on ``main`` (:mod:`ops.mainline`: built from the
remote's ``main``, never from the working tree): a pull request by default (``--push``
commits to ``main`` directly where that is allowed; ``--no-main`` skips it), so the next
deploy from ``main`` keeps the rollback instead of undoing it. CI recognises a prod change
that touches only the flag's keys and applies it at once, to the flag's resources only
(:func:`rollout_urns`), through the ``production`` environment, without waiting for staging
(``ops.deploy_plan``). ``--main-only`` does only
that part, for an operator without prod credentials: the flag changes when CI deploys it
(minutes), not here (seconds). If the local update fails, the change still goes to ``main``,
so CI can apply it.

A rollback is a plan of steps (:func:`plan`) run in order (:func:`execute`). Deliberately
does not own: deciding to roll back (``ops health`` / ``ops canary`` gates, people), or the
image (an image rollback pins ``image.digest``: docs/rollout.md).

Exit codes: 0 done, 1 a pulumi step or the change on main failed, 2 usage, 3 refused
(missing Scenario credentials, no Pulumi CLI, no stack file).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ops.mainline import Mainline, MainlineError
from ops.promote import PromoteError, project_name, set_key

#: Component and child names __main__.py gives the two resources (a test holds these
#: against the URNs the program registers).
FLAG_PATH = (
    "comfyui-runpod:index:ProviderSwitch$cloudflare:index/workersKv:WorkersKv",
    "rollout-flag",
)
VARIABLE_PATH = (
    "comfyui-runpod:index:AppDeployment"
    "$github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable",
    "app-image-generation-provider",
)
PERCENT_VARIABLE_PATH = (
    "comfyui-runpod:index:AppDeployment"
    "$github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable",
    "app-comfyui-traffic-percent",
)
PROVIDER_KEY = "rollout.provider"
SCENARIO_KEYS = ("app.scenarioApiKey", "app.scenarioSecretApiKey")
EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 1, 2, 3


class RefusedError(Exception):
    """The rollback must not run; the message says why and what fixes it."""


def short_name(stack: str) -> str:
    """``prod`` for ``prod`` or ``<org>/<project>/prod``: the name URNs and
    ``Pulumi.<stack>.yaml`` use (``--stack`` accepts both)."""
    return stack.rsplit("/", 1)[-1]


def _urn(project: str, stack: str, path: tuple[str, str]) -> str:
    """The URN of the resource at ``path`` (qualified type, name) in ``stack`` (the root stack
    is not part of a URN's type chain)."""
    qualified_type, name = path
    return f"urn:pulumi:{short_name(stack)}::{project}::{qualified_type}::{name}"


def target_urns(project: str, stack: str) -> tuple[str, str]:
    """URNs of the KV flag value and of the provider variable."""
    return _urn(project, stack, FLAG_PATH), _urn(project, stack, VARIABLE_PATH)


def rollout_urns(project: str, stack: str) -> tuple[str, str, str]:
    """URNs of every resource a ``rollout.*`` change (provider or percentage) updates: the KV
    flag value and the ``IMAGE_GENERATION_PROVIDER`` and ``COMFYUI_TRAFFIC_PERCENT`` variables.
    CI's rollout-only prod deploy targets exactly these (``.github/workflows/deploy.yml``), so
    anything else merged to ``main`` but not yet promoted stays out of prod."""
    return (*target_urns(project, stack), _urn(project, stack, PERCENT_VARIABLE_PATH))


@dataclass(frozen=True)
class Request:
    """What the operator asked for."""

    stack: str
    undo: bool = False
    dry_run: bool = False
    yes: bool = False
    main: Literal["pr", "push", "none"] = "pr"
    """How the change reaches ``main``: a pull request, a direct push, or not at all."""
    main_only: bool = False
    """Only put the change on ``main`` (CI applies it); change nothing here."""

    @property
    def provider(self) -> str:
        """The provider the flag will name."""
        return "comfyui" if self.undo else "scenario"


@dataclass(frozen=True)
class Step:
    """One command of the plan; ``argv[0]`` is ``pulumi``."""

    argv: tuple[str, ...]
    why: str


@dataclass
class Project:
    """The Pulumi project in the working directory."""

    root: Path
    name: str = field(init=False)

    def __post_init__(self) -> None:
        path = self.root / "Pulumi.yaml"
        if not path.is_file():
            raise RefusedError(f"no Pulumi.yaml in {self.root}: run from the project directory")
        try:
            self.name = project_name(self.stack_file("any"))
        except PromoteError as exc:
            raise RefusedError(str(exc)) from None

    def stack_file(self, stack: str) -> Path:
        """``Pulumi.<stack>.yaml``."""
        return self.root / f"Pulumi.{short_name(stack)}.yaml"

    def key(self, name: str) -> str:
        """The full config key of a project key."""
        return f"{self.name}:{name}"


def plan(request: Request, project: Project, *, config_file: Path | None = None) -> list[Step]:
    """The commands that set the flag and apply it to the two resources only.

    With ``config_file`` (the dry run) both the config change and the preview use that copy
    of the stack file, so the real one is never written.
    """
    stack = ["--stack", request.stack]
    copy = ["--config-file", str(config_file)] if config_file else []
    targets = [arg for urn in target_urns(project.name, request.stack) for arg in ("--target", urn)]
    set_flag = Step(
        ("pulumi", "config", "set", PROVIDER_KEY, request.provider, *stack, *copy),
        f"{PROVIDER_KEY} = {request.provider}"
        + (" (in a copy of the stack file)" if config_file else ""),
    )
    if config_file is not None:
        apply = Step(
            ("pulumi", "preview", *stack, *copy, *targets, "--diff"),
            "preview the KV flag value and the IMAGE_GENERATION_PROVIDER variable only",
        )
    else:
        confirm = ["--yes", "--skip-preview"] if request.yes else []
        apply = Step(
            ("pulumi", "up", *stack, *targets, *confirm),
            "update the KV flag value and the IMAGE_GENERATION_PROVIDER variable only",
        )
    return [set_flag, apply]


Runner = Callable[[Sequence[str]], int]
Reader = Callable[[Sequence[str]], str]


def run_inheriting(argv: Sequence[str]) -> int:
    """Run a command attached to this terminal (pulumi may ask to confirm)."""
    return subprocess.run(list(argv), check=False).returncode


def read_output(argv: Sequence[str]) -> str:
    """Run a read-only command and return its stdout; a failure is a refusal."""
    done = subprocess.run(list(argv), check=False, capture_output=True, text=True)
    if done.returncode != 0:
        detail = done.stderr.strip() or done.stdout.strip()
        raise RefusedError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {detail}")
    return done.stdout


def stack_config(request: Request, read: Reader) -> dict[str, Any]:
    """``pulumi config --json`` of the stack (secrets stay encrypted: values are elided)."""
    text = read(("pulumi", "config", "--stack", request.stack, "--json"))
    try:
        config = json.loads(text)
    except ValueError as error:
        raise RefusedError(f"`pulumi config --json` did not print JSON: {error}") from error
    if not isinstance(config, dict):
        raise RefusedError("`pulumi config --json` did not print a JSON object")
    return config


def _configured(config: dict[str, Any], full_key: str) -> bool:
    entry = config.get(full_key)
    if not isinstance(entry, dict):
        return False
    # Without --show-secrets a secret's value is left out; its presence is what counts.
    return bool(entry.get("secret")) or bool(str(entry.get("value") or "").strip())


def check(request: Request, project: Project, config: dict[str, Any]) -> str:
    """Refuse what must not run; return the provider the stack's config names now."""
    if not request.undo:
        missing = [key for key in SCENARIO_KEYS if not _configured(config, project.key(key))]
        if missing:
            fixes = "; ".join(
                f"pulumi config set --secret {key} <value> --stack {request.stack}"
                for key in missing
            )
            raise RefusedError(
                f"Scenario's credentials are not configured for stack {request.stack!r} "
                f"({', '.join(missing)} missing): the app would fall back to a provider it "
                f"cannot call. Set them first: {fixes}"
            )
    entry = config.get(project.key(PROVIDER_KEY))
    current = entry.get("value") if isinstance(entry, dict) else None
    return str(current or "scenario")


def execute(steps: Sequence[Step], run: Runner, log: Callable[[str], None]) -> int:
    """Run the steps in order; stop at the first failure and say which."""
    for step in steps:
        log(f"{step.why}: {' '.join(step.argv)}")
        code = run(step.argv)
        if code != 0:
            log(f"failed (exit {code}): {' '.join(step.argv)}")
            return EXIT_FAILED
    return 0


@contextmanager
def stack_file_copy(project: Project, stack: str) -> Iterator[Path]:
    """A throw-away copy of ``Pulumi.<stack>.yaml`` (same encryption salt and secrets)."""
    source = project.stack_file(stack)
    if not source.is_file():
        raise RefusedError(f"{source.name} not found in {project.root}: run from the project")
    with tempfile.TemporaryDirectory(prefix="rollback-") as directory:
        copy = Path(directory) / source.name
        shutil.copyfile(source, copy)
        yield copy


def rollback(
    request: Request,
    project: Project,
    *,
    run: Runner = run_inheriting,
    read: Reader = read_output,
    log: Callable[[str], None] | None = None,
    mainline: Mainline | None = None,
) -> int:
    """Check, plan and run (or dry-run) one rollback, then put it on main; the exit code."""
    say = log or _stderr
    code = 0
    if request.main_only:
        say(
            "--main-only: nothing changes here; the flag changes when CI deploys the change "
            "(check that CI's production environment holds Scenario's credentials)"
        )
    else:
        config = stack_config(request, read)
        current = check(request, project, config)
        if current == request.provider:
            say(f"stack {request.stack!r} already names {current}; re-applying the flag")
        if request.dry_run:
            say("dry run: a real run would execute:")
            for step in plan(request, project):
                say(f"  {' '.join(step.argv)}")
            with stack_file_copy(project, request.stack) as copy:
                code = execute(plan(request, project, config_file=copy), run, say)
        else:
            code = execute(plan(request, project), run, say)
            if code != 0 and request.main != "none":
                say("the flag did not change here; putting the change on main so CI applies it")
    if request.main == "none":
        return code
    if request.dry_run:
        how = (
            "push to main"
            if request.main == "push"
            else f"open a pull request ({_branch(request)})"
        )
        say(
            f"  then: {how} setting {PROVIDER_KEY}={request.provider} in "
            f"Pulumi.{request.stack}.yaml"
        )
        return code
    return _on_main(request, project, mainline or Mainline(project.root), say) or code


def _branch(request: Request) -> str:
    return f"rollback/{request.stack}-{request.provider}"


def _on_main(
    request: Request, project: Project, mainline: Mainline, say: Callable[[str], None]
) -> int:
    """Put ``rollout.provider`` on main; 0, or :data:`EXIT_FAILED` with the reason said."""
    key, path = project.key(PROVIDER_KEY), project.stack_file(request.stack).name
    applied = (
        "" if request.main_only else " It is already applied to the stack by scripts/rollback."
    )
    try:
        proposal = mainline.propose(
            path,
            lambda text: set_key(text, key, request.provider)[0],
            message=f"Roll {request.stack} to {request.provider} ({PROVIDER_KEY})",
            mode="push" if request.main == "push" else "pr",
            branch=_branch(request),
            title=f"{request.stack}: {PROVIDER_KEY}={request.provider}",
            body=(
                f"Sets `{PROVIDER_KEY}: {request.provider}` in `{path}` and nothing else, so the "
                f"next deploy from main keeps it.{applied} A change to `rollout.provider` only "
                "deploys at once through the `production` environment, without waiting for "
                "staging, and updates nothing but the flag "
                "(docs/rollout.md#emergency-rollback-checklist)."
            ),
        )
    except (MainlineError, PromoteError) as error:
        say(f"could not put the change on main: {error}")
        return EXIT_FAILED
    if not proposal.changed:
        say(f"main already has {PROVIDER_KEY}={request.provider}")
    elif request.main == "push":
        say(f"pushed {proposal.commit} to main: CI deploys it (rollout-only change)")
    else:
        verb = "updated" if proposal.existing else "opened"
        say(f"{verb} {proposal.url}: merging it deploys the change (rollout-only, no staging wait)")
    return 0


def _require_pulumi() -> None:
    if shutil.which("pulumi") is None:
        raise RefusedError("the Pulumi CLI is not on PATH: curl -fsSL https://get.pulumi.com | sh")


def _stderr(message: str) -> None:
    sys.stderr.write(f"[rollback] {message}\n")


def parser() -> argparse.ArgumentParser:
    """The command line."""
    cli = argparse.ArgumentParser(
        prog="scripts/rollback",
        description=(
            "Send the app back to Scenario: set rollout.provider and update only the "
            "Workers KV flag and the IMAGE_GENERATION_PROVIDER variable (nothing on RunPod)."
        ),
    )
    cli.add_argument("stack", help="the stack to roll back, e.g. prod")
    cli.add_argument(
        "--undo", action="store_true", help="walk back: rollout.provider=comfyui again"
    )
    cli.add_argument(
        "--dry-run",
        action="store_true",
        help="change nothing: preview the targeted update against a copy of the stack file",
    )
    cli.add_argument(
        "--yes", action="store_true", help="do not ask before updating (pulumi up --yes)"
    )
    where = cli.add_mutually_exclusive_group()
    where.add_argument(
        "--push",
        action="store_const",
        const="push",
        dest="main",
        default="pr",
        help="commit the change to main directly instead of opening a pull request",
    )
    where.add_argument(
        "--no-main",
        action="store_const",
        const="none",
        dest="main",
        help="do not put the change on main (drills; the next deploy from main undoes it)",
    )
    cli.add_argument(
        "--main-only",
        action="store_true",
        help="change nothing here: only put the change on main, for CI to deploy",
    )
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:
        return EXIT_USAGE if exit_.code else 0
    if args.main_only and args.main == "none":
        _stderr("--main-only and --no-main together would do nothing")
        return EXIT_USAGE
    request = Request(
        stack=args.stack,
        undo=args.undo,
        dry_run=args.dry_run,
        yes=args.yes,
        main=args.main,
        main_only=args.main_only,
    )
    try:
        if not request.main_only:
            _require_pulumi()
        return rollback(request, Project(Path.cwd()))
    except RefusedError as refused:
        _stderr(f"refused: {refused}")
        return EXIT_REFUSED


if __name__ == "__main__":
    raise SystemExit(main())
