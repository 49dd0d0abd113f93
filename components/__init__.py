"""Pulumi components of the comfyui-runpod program, one concern per module."""
