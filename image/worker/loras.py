"""Style models (LoRAs) per job: the ``loras`` input, and a bounded cache of bucket files.

Owns: validating ``input.loras`` (``[{"key" | "name", "strength", "expert"?}]``, at most
:data:`~worker.templates.MAX_LORAS`), resolving a ``name`` to a LoRA of ``models.toml``
(its file is installed by ``MODEL_GROUPS`` like any model), and fetching a ``key`` (an object
under ``loras/`` in the worker's bucket, read with the worker's R2 credentials) into
``<loras folder>/bucket/``, where ComfyUI's ``LoraLoaderModelOnly`` lists it.

The cache: one file per object version, named after its sha256 (the ``sha256`` metadata
``ops lora upload`` records) or its ETag, so a re-uploaded key is a new file and ComfyUI never
reuses a stale LoRA it loaded by path. A download goes to ``.partial/`` while it is hashed,
is checked against the size, the sha256 (or the ETag: MD5 of a single PUT, or the multipart
ETag of uniform 16 MiB parts) and the safetensors header, and only then is renamed into
place: a partial or unverified file is never published. Per file, an exclusive ``flock``
makes parallel jobs on one worker wait for one download instead of each fetching it; a
shared lock held until the job ends keeps the file from being evicted while ComfyUI may
still load it, and never delays another job that uses the same present file. The atomic
rename keeps workers on other hosts sharing the volume safe too (same name, same bytes).
Every use updates the file's mtime; when the cache grows past its size limit the least
recently used files go first, never one in use here or used in the last ``grace_s`` seconds
(another host may be loading it).

Errors are :class:`LoraError` with the contract's ``error_type``: ``validation`` for a bad
entry, an unknown key or name, an oversized or non-safetensors file; ``missing_model`` when
the worker cannot fetch or verify a file (R2 refusal, checksum mismatch, no cache folder).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from worker.manifest import ManifestError, load_manifest
from worker.models import publish
from worker.r2 import etag_of, strip_etag
from worker.templates import LORA_STRENGTH, MAX_LORAS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("worker.loras")

KEY_PREFIX = "loras/"
#: Subfolder of ComfyUI's ``loras`` folder that holds bucket files (``bucket/<file>``).
CACHE_SUBDIR = "bucket"
#: Object keys a job may name: ``loras/`` then plain path segments, a ``.safetensors`` file.
KEY_PATTERN = re.compile(
    r"^loras/(?:[A-Za-z0-9][A-Za-z0-9._-]{0,127}/){0,4}"
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.safetensors$"
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
CHUNK = 1024 * 1024
EXPERTS = ("both", "high", "low")
#: ``safetensors`` refuses headers larger than this (its MAX_HEADER_SIZE).
MAX_HEADER_BYTES = 100_000_000
#: Partial downloads older than this are debris of a killed worker.
STALE_PARTIAL_S = 24 * 3600.0

ErrorType = Literal["validation", "missing_model"]


class LoraError(Exception):
    """A LoRA could not be used; ``error_type`` is the job contract's."""

    def __init__(self, error_type: ErrorType, message: str) -> None:
        super().__init__(message)
        self.error_type: ErrorType = error_type
        self.message = message


def _invalid(message: str) -> LoraError:
    return LoraError("validation", message)


@dataclass(frozen=True)
class LoraSpec:
    """One entry of ``input.loras``, checked."""

    index: int
    key: str | None
    name: str | None
    strength: float
    expert: str = "both"
    """WAN templates: ``high``, ``low`` or ``both`` experts; other templates: ``both``."""

    @property
    def targets(self) -> tuple[str, ...]:
        """The template targets it applies to (empty: all of them)."""
        return () if self.expert == "both" else (self.expert,)

    def echo(self) -> dict[str, Any]:
        """The entry as the job result repeats it."""
        out: dict[str, Any] = {"key": self.key} if self.key else {"name": self.name}
        out["strength"] = self.strength
        if self.expert != "both":
            out["expert"] = self.expert
        return out


def parse_loras(raw: Any, target_names: Sequence[str]) -> list[LoraSpec]:
    """Check ``input.loras``; ``target_names`` are the template's LoRA targets."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _invalid('input.loras must be a list like [{"key": "loras/...", "strength": 0.8}]')
    if len(raw) > MAX_LORAS:
        raise _invalid(f"input.loras has {len(raw)} entries; at most {MAX_LORAS} per job")
    specs: list[LoraSpec] = []
    for index, item in enumerate(raw):
        where = f"input.loras[{index}]"
        if not isinstance(item, dict) or set(item) - {"key", "name", "strength", "expert"}:
            raise _invalid(f"{where} must be an object with key or name, strength and expert")
        if ("key" in item) == ("name" in item):
            raise _invalid(
                f"{where} needs exactly one of key (an object under loras/ in the bucket, as "
                "`python -m ops lora upload` prints it) or name (a LoRA of models.toml)"
            )
        key, name = item.get("key"), item.get("name")
        if key is not None and (not isinstance(key, str) or not KEY_PATTERN.fullmatch(key)):
            raise _invalid(
                f"{where}.key {key!r} must be an object key under {KEY_PREFIX} ending in "
                ".safetensors (letters, digits, . _ - and up to 4 folders), e.g. "
                "loras/3f2a9c1d0b7e4a55/castle_style.safetensors"
            )
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise _invalid(f"{where}.name must be the name of a LoRA in image/models.toml")
        specs.append(
            LoraSpec(
                index=index,
                key=key,
                name=name,
                strength=_strength(where, item.get("strength", 1.0)),
                expert=_expert(where, item.get("expert", "both"), target_names),
            )
        )
    return specs


def _strength(where: str, value: Any) -> float:
    low, high = LORA_STRENGTH
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _invalid(f"{where}.strength must be a number from {low:g} to {high:g}")
    if not low <= value <= high:
        raise _invalid(f"{where}.strength must be from {low:g} to {high:g}, got {value}")
    return float(value)


def _expert(where: str, value: Any, target_names: Sequence[str]) -> str:
    experts = [t for t in target_names if t in EXPERTS]
    if value == "both":
        return "both"
    if not experts:
        raise _invalid(
            f"{where}.expert applies only to WAN templates (high/low noise experts); "
            "leave it out here"
        )
    if value not in EXPERTS:
        raise _invalid(f"{where}.expert must be one of {', '.join(EXPERTS)}, got {value!r}")
    return str(value)


# -- names in models.toml -------------------------------------------------------------------
@lru_cache(maxsize=4)
def manifest_loras(manifest: Path) -> Mapping[str, str]:
    """LoRA entries of ``models.toml``: entry name -> the name ComfyUI lists (below loras/).

    Read through :func:`worker.manifest.load_manifest`, the one parser: a manifest it
    refuses is a ``missing_model`` error naming its problems (the image is broken, not the
    job), never an empty table that would blame the job's LoRA name. Read once per path (the
    image's manifest does not change while the worker runs); a refusal is not kept.
    """
    try:
        entries = load_manifest(manifest)
    except ManifestError as exc:
        raise LoraError("missing_model", f"cannot look LoRA names up: {exc}") from None
    return {
        entry.name: entry.path.removeprefix(KEY_PREFIX)
        for entry in entries
        if entry.path.startswith(KEY_PREFIX)
    }


def resolve_name(spec: LoraSpec, manifest: Path) -> str:
    """The ComfyUI name of a ``name`` LoRA, or a ``validation`` error listing the known ones."""
    known = manifest_loras(manifest)
    if spec.name is not None and spec.name in known:
        return known[spec.name]
    raise _invalid(
        f"input.loras[{spec.index}].name {spec.name!r} is not a LoRA in image/models.toml "
        f"(LoRAs there: {', '.join(sorted(known)) or 'none'}); for your own files upload them "
        "with `python -m ops lora upload` and send the key"
    )


# -- the cache ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CachedLora:
    """A bucket LoRA ready in the cache."""

    key: str
    lora_name: str
    """What ``LoraLoaderModelOnly`` lists: ``bucket/<file>``."""
    path: Path
    size: int
    sha256: str | None
    """The sha256 the file was verified by (None when the ETag verified it)."""
    downloaded: bool
    """False when the file was already in the cache."""


@dataclass(frozen=True)
class _Remote:
    size: int
    etag: str
    sha256: str | None


def _claim(handle: IO[bytes], final: Path, size: int, *, deadline: float, what: str) -> bool:
    """Lock ``final``'s lock file: shared when the file is present (True), exclusive when it
    must be downloaded (False). Waits (until ``deadline``, ``time.monotonic``) only while a
    download or an eviction holds it exclusively: jobs using a present file never wait for
    each other, nor a job for its own entries naming the same key."""
    fd = handle.fileno()
    while True:
        with contextlib.suppress(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            if _present(final, size):
                return True
            fcntl.flock(fd, fcntl.LOCK_UN)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not _present(final, size):
                return False
            fcntl.flock(fd, fcntl.LOCK_SH)  # a parallel job fetched it meanwhile
            return True
        if time.monotonic() >= deadline:
            raise LoraError(
                "missing_model",
                f"{what}: another job on this worker (or the volume) was still downloading "
                "it when this job's time (JOB_TIMEOUT_S) ran out",
            )
        time.sleep(0.05)


@dataclass
class LoraCache:
    """Bucket LoRAs in ``<loras_dir>/bucket``, at most ``max_bytes`` in total (LRU)."""

    loras_dir: Path
    """ComfyUI's ``loras`` folder (on the models volume)."""
    max_bytes: int
    """Size the cache is brought back under after each download."""
    max_file_bytes: int
    """Largest LoRA a job may fetch."""
    grace_s: float = 900.0
    """A file used this recently is never evicted (another host may be loading it)."""

    @property
    def folder(self) -> Path:
        """Where the cached files are."""
        return self.loras_dir / CACHE_SUBDIR

    def _prepare(self) -> None:
        for sub in (self.folder / ".partial", self.folder / ".locks"):
            sub.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def session(self) -> Iterator[LoraSession]:
        """A job's use of the cache: files it fetched stay locked (not evictable) until exit."""
        try:
            self._prepare()
        except OSError as exc:
            raise LoraError(
                "missing_model",
                f"the LoRA cache folder {self.folder} cannot be created ({exc.strerror}); "
                "check LORAS_DIR / MODELS_DIR and the volume",
            ) from exc
        session = LoraSession(self)
        try:
            yield session
        finally:
            session.close()

    def entries(self) -> list[Path]:
        """Published cache files (no partials, no locks)."""
        if not self.folder.is_dir():
            return []
        return [p for p in self.folder.iterdir() if p.is_file() and not p.name.startswith(".")]

    def evict(self, *, keep: set[str]) -> list[str]:
        """Remove least recently used files until the cache fits; return what went."""
        now = time.time()
        self._drop_stale_partials(now)
        files: list[tuple[float, int, Path]] = []
        for path in self.entries():
            with contextlib.suppress(OSError):
                stat = path.stat()
                files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        removed: list[str] = []
        for mtime, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            if path.name in keep or now - mtime < self.grace_s:
                continue
            handle = (self.folder / ".locks" / f"{path.name}.lock").open("a+b")
            try:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a job on this worker uses it
                path.unlink(missing_ok=True)
                total -= size
                removed.append(path.name)
            finally:
                handle.close()
        if total > self.max_bytes:
            log.warning(
                "LoRA cache %s holds %d bytes, over LORA_CACHE_MAX_BYTES=%d: every file is in "
                "use or was used in the last %g s",
                self.folder,
                total,
                self.max_bytes,
                self.grace_s,
            )
        for name in removed:
            log.info("LoRA cache: evicted %s (least recently used)", name)
        return removed

    def _drop_stale_partials(self, now: float) -> None:
        partial = self.folder / ".partial"
        if not partial.is_dir():
            return
        for path in partial.iterdir():
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > STALE_PARTIAL_S:
                    path.unlink()


@dataclass
class LoraSession:
    """The LoRAs one job fetched, locked against eviction until :meth:`close`."""

    cache: LoraCache
    held: list[IO[bytes]] = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def close(self) -> None:
        """Release this job's locks."""
        for handle in self.held:
            handle.close()
        self.held.clear()

    def fetch(
        self, client: S3Client, bucket: str, key: str, *, deadline: float, index: int = 0
    ) -> CachedLora:
        """Make ``key`` available to ComfyUI; download it only if the cache lacks it."""
        where = f"input.loras[{index}].key {key!r}"
        remote = _head(client, bucket, key, where)
        if remote.size > self.cache.max_file_bytes:
            raise _invalid(
                f"{where} is {remote.size} bytes, over the {self.cache.max_file_bytes}-byte "
                "limit for one LoRA (LORA_MAX_BYTES)"
            )
        ident = remote.sha256[:16] if remote.sha256 else "etag-" + _hex(remote.etag)[:16]
        file_name = f"{ident}-{_SAFE.sub('_', key.rsplit('/', 1)[-1])}"
        final = self.cache.folder / file_name
        lock_path = self.cache.folder / ".locks" / f"{file_name}.lock"
        try:
            handle = lock_path.open("a+b")
        except OSError as exc:
            raise self._unwritable(where, exc) from exc
        try:
            downloaded = not _claim(handle, final, remote.size, deadline=deadline, what=where)
            if downloaded:
                _download(client, bucket, key, remote, final, where=where, deadline=deadline)
                os.utime(final)  # fresh before the lock is shared: not an eviction candidate
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH)  # in use until the job ends
            os.utime(final)  # the LRU clock
        except (TimeoutError, ConnectionError) as exc:  # the network, mid-download
            handle.close()
            raise _unavailable(where, bucket, type(exc).__name__, None) from exc
        except OSError as exc:  # disk full, volume gone: the job's error, not a traceback
            handle.close()
            raise self._unwritable(where, exc) from exc
        except BaseException:
            handle.close()
            raise
        self.held.append(handle)
        self.names.add(file_name)
        if downloaded:
            self.cache.evict(keep=self.names)
        return CachedLora(
            key=key,
            lora_name=f"{CACHE_SUBDIR}/{file_name}",
            path=final,
            size=remote.size,
            sha256=remote.sha256,
            downloaded=downloaded,
        )

    def _unwritable(self, where: str, exc: OSError) -> LoraError:
        return LoraError(
            "missing_model",
            f"{where}: the LoRA cache {self.cache.folder} could not store it "
            f"({exc.strerror or exc}); free space on the models volume, make it larger, or "
            "lower LORA_CACHE_MAX_BYTES",
        )


def _present(final: Path, size: int) -> bool:
    try:
        return final.stat().st_size == size and final.is_file()
    except OSError:
        return False


def _hex(etag: str) -> str:
    return re.sub(r"[^0-9a-f]", "", etag.lower())


def _client_error(exc: ClientError) -> tuple[str, int | None]:
    code = str(exc.response.get("Error", {}).get("Code", "error"))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, status if isinstance(status, int) else None


def _head(client: S3Client, bucket: str, key: str, where: str) -> _Remote:
    try:
        answer = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code, status = _client_error(exc)
        if status == 404 or code in {"404", "NoSuchKey", "NotFound"}:
            raise _invalid(
                f"{where} is not in bucket {bucket}; upload it with `python -m ops lora upload "
                "FILE` and send the key it prints (`python -m ops lora list` lists them)"
            ) from exc
        raise _unavailable(where, bucket, code, status) from exc
    except BotoCoreError as exc:
        raise _unavailable(where, bucket, type(exc).__name__, None) from exc
    metadata = {k.lower(): v for k, v in (answer.get("Metadata") or {}).items()}
    sha = metadata.get("sha256", "").strip().lower()
    return _Remote(
        size=int(answer["ContentLength"]),
        etag=strip_etag(answer["ETag"]),
        sha256=sha if _SHA256.fullmatch(sha) else None,
    )


def _unavailable(where: str, bucket: str, code: str, status: int | None) -> LoraError:
    if status == 403 or code in {"403", "AccessDenied"}:
        hint = "the worker's R2 token may not read it: it needs object read on the bucket"
    elif status == 412 or code == "PreconditionFailed":
        hint = "it was replaced while this job downloaded it; send the job again"
    else:
        hint = "R2 did not answer; try again"
    return LoraError(
        "missing_model", f"could not fetch {where} from R2 bucket {bucket} ({code}): {hint}"
    )


def _download(
    client: S3Client,
    bucket: str,
    key: str,
    remote: _Remote,
    final: Path,
    *,
    where: str,
    deadline: float,
) -> None:
    """GET the object version ``remote`` into ``.partial``, verify it, rename it to ``final``."""
    partial = final.parent / ".partial" / f"{uuid.uuid4().hex}.part"
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    started = time.monotonic()
    try:
        try:
            # If-Match: the bytes must be the version HEAD described, not a newer upload.
            answer = client.get_object(Bucket=bucket, Key=key, IfMatch=f'"{remote.etag}"')
            size = 0
            with partial.open("wb") as sink:
                for block in answer["Body"].iter_chunks(CHUNK):
                    size += len(block)
                    if size > remote.size:
                        raise LoraError(
                            "missing_model", f"{where}: R2 sent more bytes than HEAD announced"
                        )
                    if time.monotonic() > deadline:
                        raise LoraError(
                            "missing_model",
                            f"{where}: the download did not finish within JOB_TIMEOUT_S",
                        )
                    sha.update(block)
                    md5.update(block)
                    sink.write(block)
                sink.flush()
                os.fsync(sink.fileno())
        except ClientError as exc:
            code, status = _client_error(exc)
            raise _unavailable(where, bucket, code, status) from exc
        except BotoCoreError as exc:
            raise _unavailable(where, bucket, type(exc).__name__, None) from exc
        _verify(partial, size, (sha.hexdigest(), md5.hexdigest()), remote, where)
        publish(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    log.info(
        "LoRA %s cached as %s (%d bytes in %.1f s)",
        key,
        final.name,
        remote.size,
        time.monotonic() - started,
    )


def _verify(path: Path, size: int, digests: tuple[str, str], remote: _Remote, where: str) -> None:
    """Size, then sha256 (or the ETag), then the safetensors header; ``digests``: (sha256, md5)."""
    sha256, md5 = digests
    if size != remote.size:
        raise LoraError("missing_model", f"{where}: got {size} of {remote.size} bytes; try again")
    if remote.sha256 is not None:
        if sha256 != remote.sha256:
            raise LoraError(
                "missing_model",
                f"{where}: sha256 {sha256[:12]}... differs from the {remote.sha256[:12]}... "
                "recorded at upload; the object is damaged: upload the file again",
            )
    elif "-" not in remote.etag:
        if md5 != remote.etag:
            raise LoraError("missing_model", f"{where}: MD5 {md5} differs from its ETag")
    else:
        with path.open("rb") as handle:
            local = etag_of(lambda offset, length: os.pread(handle.fileno(), length, offset), size)
        if local != remote.etag:
            raise LoraError(
                "missing_model",
                f"{where}: cannot verify it (multipart ETag {remote.etag} with another part "
                "size, and no sha256 metadata); upload it with `python -m ops lora upload`, "
                "which records the sha256",
            )
    problem = safetensors_problem(path)
    if problem is not None:
        raise _invalid(f"{where} is not a safetensors file ({problem}); LoRAs must be .safetensors")


def safetensors_problem(path: Path) -> str | None:  # noqa: PLR0911 - one per refusal
    """Why ``path`` is not a well-formed safetensors file (None: it is)."""
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return "shorter than its 8-byte header length"
        length = int.from_bytes(head, "little")
        if length > MAX_HEADER_BYTES:
            return "header length too large"
        header = handle.read(length)
    body = path.stat().st_size - 8 - length
    if len(header) != length or body < 0:
        return "header runs past the end of the file"
    try:
        parsed = json.loads(header)
    except (ValueError, RecursionError):  # RecursionError: JSON nested past Python's limit
        return "header is not JSON"
    if not isinstance(parsed, dict):
        return "header is not a JSON object"
    for name, info in parsed.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, Mapping) else None
        if not (isinstance(offsets, list) and len(offsets) == 2):
            return f"tensor {name!r} has no data_offsets"
        if not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets):
            return f"tensor {name!r} has data_offsets that are not integers"  # usize upstream
        if not 0 <= offsets[0] <= offsets[1] <= body:
            return f"tensor {name!r} lies outside the file (truncated?)"
    return None
