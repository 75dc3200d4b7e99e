"""Artifact I/O: atomic writes and checked reads.

Every artifact is written to a temporary file in its destination directory and renamed into
place (``os.replace`` is atomic on POSIX), so a killed stage leaves the old file or none, never
a half-written one. Readers raise :class:`ArtifactError` naming the file when it is missing or
unreadable.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


class ArtifactError(RuntimeError):
    """A missing, corrupt or incompatible artifact; the message names the file."""


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _unwritable(path, e) from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise _unwritable(path, e) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _unwritable(
    path: Path, e: BaseException, what: str = "", error: type[ArtifactError] = ArtifactError
) -> ArtifactError:
    """A failed write as ``error`` naming the file (and ``what`` it holds), the cause and what
    to do. Every writer here removes its temporary file first, so nothing half-written is left
    under ``path``. ``e`` is an ``OSError`` or one of torch's archive-writer failures
    (:data:`WRITER_FAILURES`), which is how a full disk shows there."""
    if isinstance(e, OSError):
        cause = e.strerror or str(e)
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
    else:
        cause = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        full = True
    if full:
        todo = f"free disk space on the filesystem of {path.parent} and run again"
    else:
        todo = f"check that {path.parent} is a writable folder and run again"
    name = f"{what} {path}" if what else str(path)
    return error(f"{name}: cannot be written ({cause}); nothing half-written was kept: {todo}")


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj: Any) -> None:
    """The project's one JSON writer: strict JSON, written atomically. It converts nothing: NaN
    and infinities are refused (JSON has no such numbers; use None), so a missing number is
    never written silently. ``conceptspace.analysis.jsonready.clean`` is the one function that
    turns non-finite numbers into None, before they come here."""
    try:
        text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False)
    except ValueError as e:
        raise ValueError(f"{path}: {e}; write None for a missing number") from None
    write_bytes(path, (text + "\n").encode())


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Uncompressed npz that is byte-identical for identical arrays.

    ``np.savez`` stamps each zip entry with the current time; we write the same ``.npy``
    members ourselves with a fixed timestamp so that datasets hash identically on every run.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, member.getvalue())
    write_bytes(path, buf.getvalue())


def write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Atomically create ``path`` with ``writer(tmp_path)`` (e.g. a figure's savefig)."""
    with atomic_path(path) as tmp:
        writer(tmp)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: not valid JSON ({e})") from None


def read_npz(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError, ...
        raise ArtifactError(f"{path}: unreadable npz ({type(e).__name__}: {e})") from None
    missing = [k for k in required if k not in data]
    if missing:
        raise ArtifactError(f"{path}: missing arrays {missing}")
    return data


def read_torch(path: str | Path, what: str, error: type[ArtifactError] = ArtifactError) -> Any:
    """``torch.load`` a file on the CPU with ``weights_only``; a missing or unreadable file
    raises ``error`` (an :class:`ArtifactError`) naming ``what`` and the path."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, random bytes, refused unpickling, ...
        raise error(f"{what} {path}: cannot be read ({type(e).__name__}: {e})") from None


TMP_PREFIX = ".tmp-"  # temporary directories of atomic_torch_save start with this


def atomic_torch_save(
    obj: Any, path: str | Path, what: str = "file", error: type[ArtifactError] = ArtifactError
) -> None:
    """``torch.save(obj, path)`` that never leaves a partial file under ``path``.

    The archive is written inside a fresh temporary directory next to ``path`` and then moved
    into place with ``os.replace`` (atomic on one filesystem). The temporary file has the *same
    basename* as ``path`` because torch names the records inside its zip archive after the file
    name: this way the bytes equal those of a direct ``torch.save(obj, path)``, and checkpoints
    written in different directories compare byte for byte. A failed write raises ``error``
    naming ``what`` and the file, with nothing half-written left under ``path``.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp_dir = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=path.parent))
    except OSError as e:
        raise _unwritable(path, e, what, error) from None
    try:
        tmp = tmp_dir / path.name
        torch.save(obj, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the data reach the disk before the rename makes them visible
        os.replace(tmp, path)
    except OSError as e:
        raise _unwritable(path, e, what, error) from None
    except RuntimeError as e:  # torch's zip writer: "unexpected pos ...", "file write failed"
        if not any(m in str(e) for m in WRITER_FAILURES):
            raise
        raise _unwritable(path, e, what, error) from None
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


# How torch's archive writer reports a failed write (a full disk, a quota) as a RuntimeError.
WRITER_FAILURES = ("unexpected pos", "file write failed", "PytorchStreamWriter failed")
