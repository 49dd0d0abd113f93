"""A stack file's values, read offline: no Pulumi CLI, no decryption.

Owns: naming the stack from its file (``Pulumi.<stack>.yaml``) and reading the values it
sets through the program's own reader (``components.config.stack_file_values``), for the
commands that look at a stack file before deploying it (``promote``, ``pin-digest``,
``health --stack-file``).
"""

from __future__ import annotations

from pathlib import Path


def stack_values(stack_file: Path) -> dict[str, str]:
    """The values ``stack_file`` sets (not Pulumi.yaml's defaults), keyed without the
    project prefix; ``secure:`` values are placeholders."""
    from components.config import stack_file_values  # noqa: PLC0415 - keeps `ops --help` light

    stack = stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
    values, _ = stack_file_values(stack_file.parent, stack)
    return values
