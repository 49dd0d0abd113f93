#!/usr/bin/env python3
"""Build-time model baking: one model per image layer, refused above GHCR's layer limit.

Owns: turning ``BAKE_MODEL_GROUPS`` into an ordered list of manifest entries, giving slot ``i``
(one Dockerfile ``RUN``) the ``i``-th entry to download into ``MODELS_DIR`` (``/opt/models``)
with the worker's verified downloader, refusing any file over the registry's per-layer limit
before a byte is downloaded (and again after, when the manifest did not know the size), and
``--finish`` writing ``.baked``. The Hugging Face token is read from the BuildKit secret file
and never printed.

    bake_slot.py SLOT --slots N   download the SLOT-th selected model (nothing when none is left)
    bake_slot.py --finish         write MODELS_DIR/.baked when anything was baked

Exit codes: 0 done (or nothing to do), 2 bad configuration, 6 a file too large for one registry
layer (use the network volume instead); a failed download exits with the downloader's code
(1 download/verification, 3 disk full, 4 gated model without a valid token).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from worker import models  # the worker package sits beside this script
from worker.manifest import ManifestError, ModelEntry, load_manifest, manifest_path, select

#: GHCR refuses a layer over 10 GB; model files are already compressed, so the file is the layer.
LAYER_LIMIT_BYTES = 10 * 1000**3
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TOO_LARGE = 0, 1, 2, 6

log = logging.getLogger("bake")


class BakeError(Exception):
    """Baking cannot go on; ``code`` is the exit code, the message says what to do."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _too_large(entry: ModelEntry, size: int) -> BakeError:
    return BakeError(
        EXIT_TOO_LARGE,
        f"{entry.name} ({models.human_bytes(size)}, {entry.path}) is larger than one registry "
        f"layer may be ({models.human_bytes(LAYER_LIMIT_BYTES)} on GHCR): it cannot be baked. "
        f"Leave its group out of BAKE_MODEL_GROUPS and serve it from the network volume "
        f"(MODEL_GROUPS downloads it there once; docs/worker-image.md)",
    )


def plan(manifest: Path, groups_raw: str, slots: int) -> list[ModelEntry]:
    """The entries to bake, in manifest order; every known size checked against the limit."""
    groups = [g.strip() for g in groups_raw.split(",") if g.strip()]
    if not groups:
        return []
    try:
        entries = select(load_manifest(manifest), groups)
    except ManifestError as exc:
        raise BakeError(EXIT_USAGE, f"BAKE_MODEL_GROUPS={groups_raw}: {exc}") from exc
    oversized = [e for e in entries if e.size is not None and e.size > LAYER_LIMIT_BYTES]
    if oversized:
        raise BakeError(
            EXIT_TOO_LARGE, "; ".join(str(_too_large(e, e.size or 0)) for e in oversized)
        )
    if len(entries) > slots:
        raise BakeError(
            EXIT_USAGE,
            f"BAKE_MODEL_GROUPS={groups_raw} selects {len(entries)} files but the image has "
            f"{slots} bake slots (one model per layer): bake fewer groups or add slots",
        )
    return entries


def _token(env: Mapping[str, str], token_file: Path) -> str | None:
    try:
        text = token_file.read_text().strip()
    except OSError:
        text = ""
    return text or env.get("HF_TOKEN") or None


def bake(slot: int, slots: int, env: Mapping[str, str], token_file: Path) -> int:
    """Download the ``slot``-th planned entry into ``MODELS_DIR``; return the exit code."""
    manifest = manifest_path(env)
    models_dir = Path(env.get("MODELS_DIR") or "/opt/models")
    entries = plan(manifest, env.get("BAKE_MODEL_GROUPS", ""), slots)
    if slot >= len(entries):
        log.info("slot %d: nothing to bake (%d model(s) selected)", slot, len(entries))
        return EXIT_OK
    entry = entries[slot]
    options = models.Options(
        models_dir=models_dir,
        parallel=1,
        hf_token=_token(env, token_file),
        hf_hosts=models.hf_hosts(env),
    )
    downloader = models.Downloader(options)
    if entry.size is None:
        downloader.progress[entry.name] = models.Progress(entry=entry)
        try:
            remote = downloader.probe(entry)
        except models.DownloadError as exc:
            raise BakeError(EXIT_FAILED, f"{entry.name}: {exc}") from exc
        if remote.size is not None and remote.size > LAYER_LIMIT_BYTES:
            raise _too_large(entry, remote.size)
    log.info("slot %d of %d: %s -> %s", slot, slots, entry.name, models_dir / entry.path)
    code = downloader.run([entry])
    if code != 0:
        raise BakeError(code, f"{entry.name}: download or verification failed (exit {code})")
    size = (models_dir / entry.path).stat().st_size
    if size > LAYER_LIMIT_BYTES:
        (models_dir / entry.path).unlink()
        raise _too_large(entry, size)
    return EXIT_OK


def finish(env: Mapping[str, str]) -> int:
    """Write ``MODELS_DIR/.baked`` (the groups) when ``BAKE_MODEL_GROUPS`` baked anything."""
    groups = ",".join(g.strip() for g in env.get("BAKE_MODEL_GROUPS", "").split(",") if g.strip())
    models_dir = Path(env.get("MODELS_DIR") or "/opt/models")
    models_dir.mkdir(parents=True, exist_ok=True)
    if groups:
        (models_dir / ".baked").write_text(groups + "\n")
        log.info("baked groups %s into %s", groups, models_dir)
    return EXIT_OK


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point; returns the exit code."""
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="bake_slot.py", description=__doc__.split("\n")[0])
    parser.add_argument("slot", nargs="?", type=int, help="slot index, 0-based")
    parser.add_argument("--slots", type=int, help="number of bake slots in the Dockerfile")
    parser.add_argument("--finish", action="store_true", help="write .baked and exit")
    parser.add_argument("--token-file", type=Path, default=Path("/run/secrets/hf_token"))
    args = parser.parse_args(argv)
    try:
        if args.finish:
            return finish(env)
        if args.slot is None or args.slots is None or not 0 <= args.slot < args.slots:
            parser.error("give SLOT and --slots N with 0 <= SLOT < N, or --finish")
        return bake(args.slot, args.slots, env, args.token_file)
    except BakeError as exc:
        log.error("%s", exc)  # noqa: TRY400 - a configuration error for a person, not a crash
        return exc.code


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="[bake] %(message)s", stream=sys.stderr)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    sys.exit(main())
