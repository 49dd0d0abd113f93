"""The Pulumi mocks give resources the URNs the engine gives them.

``scripts/rollback`` targets resources by URN (``pulumi up --target``), and its test holds
those URNs against what the program registers under these mocks; a mock URN that differs
from the engine's would let a wrong target pass.
"""

from __future__ import annotations

import pulumi

from tests.fakes.pulumi_mocks import mocked, run


class _Component(pulumi.ComponentResource):
    def __init__(self, typ: str, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(typ, name, None, opts)
        self.register_outputs({})


def test_a_urn_carries_every_ancestor_type_but_the_root_stack() -> None:
    """Engine rule (pulumi/pulumi deployment.go, generateURN): the type chain is the parent's
    whole qualified type plus the resource's own; the root stack is never part of it."""
    with mocked(project="proj", stack="prod") as mocks:

        def program() -> None:
            outer = _Component("pkg:index:Outer", "outer")
            middle = _Component("pkg:index:Middle", "middle", pulumi.ResourceOptions(parent=outer))
            pulumi.CustomResource(
                "pkg:index:Leaf", "leaf", {}, pulumi.ResourceOptions(parent=middle)
            )

        run(program)
    urns = {r.name: r.urn for r in mocks.resources}
    assert urns == {
        "outer": "urn:pulumi:prod::proj::pkg:index:Outer::outer",
        "middle": "urn:pulumi:prod::proj::pkg:index:Outer$pkg:index:Middle::middle",
        "leaf": "urn:pulumi:prod::proj::pkg:index:Outer$pkg:index:Middle$pkg:index:Leaf::leaf",
    }
