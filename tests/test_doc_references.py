"""The docs name only things that exist: configuration keys, repository paths, links, anchors.

Reads ``docs/*.md``, ``README.md`` and ``CONTRIBUTING.md``. What counts as a reference:

- a configuration key: in backticks (``rollout.comfyuiPercent``, ``comfyui-runpod:image.digest``,
  ``runpod:apiKey``) or after ``pulumi config set|get|rm`` anywhere, code blocks included,
  when its section is one the program reads; it must be a key of ``components/config.py``;
- a repository path: a backticked word whose first segment is a top-level entry of the
  repository (``image/models.toml``, ``scripts/up``, ``Pulumi.prod.yaml``), or a bare
  ``*.py`` / ``*.sh`` file name; it must exist. Placeholders (``<stack>``, ``*``, ``$x``) and
  generated folders (``.tools/``, ``.venv/``) are not references;
- a relative Markdown link, and its ``#anchor`` (a heading of the target, GitHub's slug);
- any mention of ``../shared``: readers do not have it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.config import PROJECT, RUNPOD_API_KEY, SCHEMA, SCHEMA_BY_NAME

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(
    [*(ROOT / "docs").glob("*.md"), ROOT / "README.md", ROOT / "CONTRIBUTING.md"],
    key=lambda path: path.relative_to(ROOT).as_posix(),
)
GENERATED = frozenset({".git", ".venv", ".tools", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
TOP_LEVEL = frozenset(path.name for path in ROOT.iterdir()) - GENERATED - {"__pycache__"}
SECTIONS = frozenset(key.name.split(".", 1)[0] for key in SCHEMA)
KEYS = frozenset(SCHEMA_BY_NAME) | {RUNPOD_API_KEY}
FILE_SUFFIXES = (".md", ".py", ".sh", ".toml", ".json", ".yaml", ".yml", ".txt", ".lock")
PLACEHOLDER = re.compile(r"[<>{}*$]|\.\.\.|=")
KEY_TOKEN = re.compile(rf"(?:{re.escape(PROJECT)}:)?([A-Za-z]+)\.([A-Za-z][A-Za-z0-9]*)")
CONFIG_COMMAND = re.compile(
    r"pulumi config (?:set|get|rm)(?: --secret| --path)* ([A-Za-z][\w.:-]*)"
)
BACKTICKS = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+?)\s*$", re.MULTILINE)


def doc_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def prose(text: str) -> str:
    """``text`` without fenced code blocks (commands there may name files to be created)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def named_keys(text: str) -> Iterator[str]:
    """Configuration keys ``text`` names (backticked or in pulumi config commands)."""
    for raw in BACKTICKS.findall(prose(text)):
        token = raw.strip()
        if token == RUNPOD_API_KEY or (
            (match := KEY_TOKEN.fullmatch(token))
            and match.group(1) in SECTIONS
            and not token.endswith(FILE_SUFFIXES)
        ):
            yield token.removeprefix(f"{PROJECT}:")
    for key in CONFIG_COMMAND.findall(text):
        if not PLACEHOLDER.search(key):
            yield key.removeprefix(f"{PROJECT}:")


def named_paths(text: str) -> Iterator[str]:
    """Repository paths ``text`` names in backticks (first word of a command included)."""
    for token in BACKTICKS.findall(prose(text)):
        words = token.split()
        for raw in words:
            word = raw.strip("(),;:").split("#", 1)[0].split("::", 1)[0]  # a pytest node id
            if not word or PLACEHOLDER.search(word) or "://" in word or word.startswith("-"):
                continue
            # A bare file name counts on its own (`start.sh`), not inside a command that may
            # run someone else's file (`python main.py` in ComfyUI's folder).
            bare = len(words) == 1 and "/" not in word and word.endswith((".py", ".sh"))
            if word.split("/", 1)[0] in TOP_LEVEL or bare:
                yield word


def exists(word: str) -> bool:
    if word.split("/", 1)[0] in TOP_LEVEL:
        return (ROOT / word).exists()
    return any(not (set(found.relative_to(ROOT).parts) & GENERATED) for found in ROOT.rglob(word))


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_configuration_key_a_doc_names_is_read_by_the_program(doc: Path) -> None:
    """A key in the docs that the program does not read would be a silent no-op for a reader."""
    unknown = sorted(set(named_keys(doc.read_text(encoding="utf-8"))) - KEYS)
    assert not unknown, f"{doc_id(doc)} names keys components/config.py does not read: {unknown}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_repository_path_a_doc_names_exists(doc: Path) -> None:
    """Files and folders named in backticks exist in the checkout."""
    missing = sorted(
        {word for word in named_paths(doc.read_text(encoding="utf-8")) if not exists(word)}
    )
    assert not missing, f"{doc_id(doc)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_relative_links_and_their_anchors_resolve(doc: Path) -> None:
    """[text](path#anchor): the file exists and, for Markdown, has that heading."""
    broken = []
    for target in LINK.findall(prose(doc.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):
            continue
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md":
            anchors = {slug(h) for h in HEADING.findall(prose(path.read_text(encoding="utf-8")))}
            if anchor not in anchors:
                broken.append(target)
    assert not broken, f"{doc_id(doc)} has broken links: {broken}"


def column(text: str, header: str) -> Iterator[str]:
    """Cells of every Markdown table column titled ``header``."""
    lines = text.splitlines()
    for number, line in enumerate(lines[:-1]):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header not in cells or not re.match(r"^\|[\s:|-]+\|$", lines[number + 1].strip()):
            continue
        index = cells.index(header)
        for row in lines[number + 2 :]:
            if not row.startswith("|"):
                break
            row_cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
            if index < len(row_cells):
                yield row_cells[index]


COMPONENT_CLASSES = frozenset(
    re.findall(
        r"^class (\w+)",
        "".join(p.read_text(encoding="utf-8") for p in (ROOT / "components").rglob("*.py")),
        flags=re.MULTILINE,
    )
)


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_where_a_setting_comes_from_is_a_key_a_reader_can_set(doc: Path) -> None:
    """In "where it comes from" columns, each name is a configuration key or a component.

    A Python field there (``network_volume_size_gb``) sends the reader to code instead of to
    the ``pulumi config set`` that changes the setting.
    """
    text = prose(doc.read_text(encoding="utf-8"))
    names = [
        name for cell in column(text, "where it comes from") for name in BACKTICKS.findall(cell)
    ]
    wrong = sorted({name for name in names if not settable(name)})
    assert not wrong, f"{doc_id(doc)}: not configuration keys: {wrong}"


#: ``ARG`` names ``image/Dockerfile`` declares: a setting may come from the image itself.
DOCKERFILE_ARGS = frozenset(
    f"ARG {name}"
    for name in re.findall(
        r"^ARG ([A-Z_]+)", (ROOT / "image" / "Dockerfile").read_text(encoding="utf-8"), re.M
    )
)


def settable(name: str) -> bool:
    """A key, a component, a file of the repository or an ARG of the image's Dockerfile."""
    return name in KEYS | COMPONENT_CLASSES | DOCKERFILE_ARGS or ("/" in name and exists(name))


@pytest.mark.parametrize(
    "doc", [*DOCS, ROOT / "image" / "models.toml", ROOT / "image" / "Dockerfile"], ids=doc_id
)
def test_no_doc_points_at_files_readers_do_not_have(doc: Path) -> None:
    """``../shared`` exists only beside the maintainers' checkout."""
    assert "../shared" not in doc.read_text(encoding="utf-8")


def test_the_extractors_find_what_a_doc_names() -> None:
    """The checks above cannot pass vacuously: a sample with one of each is read as such."""
    sample = (
        "Set `rollout.comfyuiPercent` and `comfyui-runpod:image.digest`, see `image/models.toml`,"
        " run `scripts/up <stack>` or `download_models.sh`, not `linux/amd64` or `models.toml`.\n"
        "```bash\npulumi config set --secret app.githubToken <token> --stack prod\n"
        "cp Pulumi.staging.yaml Pulumi.mine.yaml\n```\n"
    )
    assert sorted(named_keys(sample)) == [
        "app.githubToken",
        "image.digest",
        "rollout.comfyuiPercent",
    ]
    assert sorted(named_paths(sample)) == ["download_models.sh", "image/models.toml", "scripts/up"]
    assert not exists("image/no-such-file.toml")
    assert "videoPod.jupyterr" not in KEYS
    assert slug("2. Credentials to create (once)") == "2-credentials-to-create-once"
    assert slug("The `ops` CLI: smoke") == "the-ops-cli-smoke"
    table = "| setting | where it comes from |\n|---|---|\n| volume | `network_volume_size_gb` |\n"
    assert list(column(table, "where it comes from")) == ["`network_volume_size_gb`"]
    assert not settable("network_volume_size_gb")
    assert not settable("ARG NO_SUCH_ARG")
    assert not settable("image/no-such-file.toml")
    assert settable("ARG CUDA_VERSION")
    assert settable("image/Dockerfile")
