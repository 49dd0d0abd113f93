"""Small, valid safetensors files for the LoRA tests (the real format, made by hand)."""

from __future__ import annotations

import json


def safetensors_bytes(seed: int, *, floats: int = 16) -> bytes:
    """A safetensors file with one F32 tensor of ``floats`` values; ``seed`` varies the bytes."""
    body = bytes((seed + i) % 256 for i in range(4 * floats))
    header = json.dumps(
        {
            "__metadata__": {"format": "pt", "seed": str(seed)},
            "lora_unet_block.lora_down.weight": {
                "dtype": "F32",
                "shape": [floats],
                "data_offsets": [0, len(body)],
            },
        }
    ).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header to 8 bytes
    return len(header).to_bytes(8, "little") + header + body
