"""The worker package shipped in the image: model downloads, R2 sync, ComfyUI client, handler.

Nothing here does I/O at import time; each module is runnable through its own entry point.
"""
