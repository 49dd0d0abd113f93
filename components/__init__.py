"""Pulumi components of the comfyui-runpod program, one concern per module.

Every component is built as ``Component(name, *, settings=cfg.<section>, <inputs wired from
other components>, opts=None)``: its section of the stack config (``components/config.py``)
and nothing else from config, so ``__main__.py`` only wires components together.
"""

import pulumi

Options = pulumi.ResourceOptions | None
"""A component's ``opts``: resource options from the caller, or none."""
