"""Checkpoint files: atomic writes, validated loads, and rebuilding a model from its checkpoint.

A checkpoint is a plain dict saved with ``torch.save`` and read back with
``torch.load(..., weights_only=True)``, so it holds only tensors, numbers, strings, lists and
dicts. It carries its own network config: evaluation rebuilds the model from the file, never
from today's params (docs/method.md §3.4).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from conceptspace.io import TMP_PREFIX, ArtifactError, read_torch
from conceptspace.io import atomic_torch_save as _atomic_torch_save
from conceptspace.model.schedule import LogSNRSchedule
from conceptspace.model.unet import UNet, UNetConfig

FORMAT = "conceptspace.ckpt.v1"
REQUIRED_KEYS = ("format", "step", "net_config", "net", "schedule")


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
    """:func:`conceptspace.io.atomic_torch_save` of a checkpoint: a failed write is a
    :class:`CheckpointError` naming the file."""
    _atomic_torch_save(obj, path, "checkpoint", CheckpointError)


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
