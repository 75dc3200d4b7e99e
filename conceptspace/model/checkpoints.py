"""Checkpoint files: atomic writes, validated loads, and rebuilding a model from its checkpoint.

A checkpoint is a plain dict saved with ``torch.save`` and read back with
``torch.load(..., weights_only=True)``, so it holds only tensors, numbers, strings, lists and
dicts. It carries its own network config: evaluation rebuilds the model from the file, never
from today's params (docs/method.md §3.4).
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from conceptspace.io import ArtifactError, read_torch
from conceptspace.model.schedule import LogSNRSchedule
from conceptspace.model.unet import UNet, UNetConfig

FORMAT = "conceptspace.ckpt.v1"
REQUIRED_KEYS = ("format", "step", "net_config", "net", "schedule")
TMP_PREFIX = ".tmp-"  # temporary directories of atomic_torch_save start with this


class CheckpointError(ArtifactError):
    """A checkpoint file is missing, unreadable or not a conceptspace checkpoint (an
    :class:`~conceptspace.io.ArtifactError`, so stages report it like any bad artifact)."""


def checkpoint_path(ckpt_dir: Path, step: int) -> Path:
    """ckpt_dir / "step_000500.pt": zero-padded so that names sort by step."""
    return Path(ckpt_dir) / f"step_{step:06d}.pt"


def canonicalize(obj: Any) -> Any:
    """Copy of a nested dict/list/tuple structure whose strings are interned.

    Pickle writes a repeated object once and refers back to it by *identity*, so the bytes of
    ``torch.save`` depend on which equal strings happen to be the same object: a key such as
    "step" read back from a checkpoint is a different object from the literal in the code. A
    resumed run would then write a checkpoint with equal values but different bytes. Interning
    every string (and rebuilding containers) makes the bytes a function of the values alone.
    Tensors are kept as they are.
    """
    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, dict):
        return {canonicalize(k): canonicalize(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [canonicalize(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(canonicalize(v) for v in obj)
    return obj


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)`` that never leaves a partial file under ``path``.

    The archive is written inside a fresh temporary directory next to ``path`` and then moved
    into place with ``os.replace`` (atomic on one filesystem). The temporary file has the *same
    basename* as ``path`` because torch names the records inside its zip archive after the file
    name: this way the bytes equal those of a direct ``torch.save(obj, path)``, and checkpoints
    written in different directories compare byte for byte.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp_dir = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=path.parent))
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        tmp = tmp_dir / path.name
        torch.save(obj, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the data reach the disk before the rename makes them visible
        os.replace(tmp, path)
    except OSError as e:
        raise _write_error(path, e) from None
    except RuntimeError as e:  # torch's zip writer: "unexpected pos ...", "file write failed"
        if not any(m in str(e) for m in WRITER_FAILURES):
            raise
        raise _write_error(path, e) from None
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


# How torch's archive writer reports a failed write (a full disk, a quota) as a RuntimeError.
WRITER_FAILURES = ("unexpected pos", "file write failed", "PytorchStreamWriter failed")


def _write_error(path: Path, e: BaseException) -> CheckpointError:
    """A failed save as a :class:`CheckpointError` naming the file, the cause and what to do;
    nothing half-written is left under ``path`` (the temporary directory is removed)."""
    if isinstance(e, OSError):
        cause = e.strerror or str(e)
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
    else:
        cause = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        full = True  # torch's writer fails this way when the disk fills
    hint = (
        f"free disk space on the filesystem of {path.parent} and run again"
        if full
        else f"check that {path.parent} is writable and run again"
    )
    return CheckpointError(
        f"checkpoint {path}: cannot be written ({cause}); nothing half-written was kept: {hint}"
    )


def remove_stale_temporaries(directory: Path) -> None:
    """Delete leftovers of atomic saves that were killed mid-write."""
    directory = Path(directory)
    if directory.is_dir():
        for p in directory.glob(f"{TMP_PREFIX}*"):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load and validate a checkpoint on the CPU; any problem raises :class:`CheckpointError`."""
    path = Path(path)
    ckpt = read_torch(path, "checkpoint", CheckpointError)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict, found {type(ckpt).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path}: missing keys {missing}")
    if ckpt["format"] != FORMAT:
        raise CheckpointError(f"checkpoint {path}: format {ckpt['format']!r}, expected {FORMAT!r}")
    return ckpt


def load_model(path: Path) -> tuple[UNet, LogSNRSchedule, dict[str, Any]]:
    """Rebuild (net, schedule) from a checkpoint's own config and weights, in eval mode, on CPU:
    the run's weight average where the checkpoint holds one (``ema``, docs/method.md §3.3),
    else its raw weights. Returns (net, schedule, ckpt) where ckpt is the full checkpoint dict.
    """
    ckpt = load_checkpoint(path)
    bounds = {k: (ckpt.get("train_config") or {}).get(k) for k in ("gamma_min", "gamma_max")}
    if None in bounds.values():  # guessing the bounds would silently shift the time input
        absent = [f"train_config.{k}" for k, v in bounds.items() if v is None]
        raise CheckpointError(f"checkpoint {path}: missing {absent} (the log-SNR bounds)")
    try:
        net = UNet(UNetConfig.from_dict(ckpt["net_config"]))
        weights = ckpt.get("ema") or ckpt
        net.load_state_dict(weights["net"])
        schedule = LogSNRSchedule(bounds["gamma_min"], bounds["gamma_max"])
        schedule.load_state_dict(weights["schedule"])
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path}: cannot rebuild the model ({e})") from e
    return net.eval(), schedule.eval(), ckpt
