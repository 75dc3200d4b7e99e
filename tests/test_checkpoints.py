"""Rebuilding a model from a checkpoint uses the checkpoint's own settings, never a guess."""

from __future__ import annotations

import pytest

from conceptspace.model.checkpoints import FORMAT, CheckpointError, atomic_torch_save, load_model
from conceptspace.model.schedule import LogSNRSchedule
from conceptspace.model.unet import UNet, UNetConfig

NET = UNetConfig(image_size=8, channels=(8, 8), groups=4)


def _checkpoint(path, train_config):
    ckpt = {
        "format": FORMAT,
        "step": 1,
        "net_config": NET.to_dict(),
        "net": UNet(NET).state_dict(),
        "schedule": LogSNRSchedule(-3.0, 7.0).state_dict(),
    }
    if train_config is not None:
        ckpt["train_config"] = train_config
    atomic_torch_save(ckpt, path)
    return path


def test_load_model_takes_the_gamma_bounds_of_the_checkpoint(tmp_path):
    path = _checkpoint(tmp_path / "a.pt", {"gamma_min": -3.0, "gamma_max": 7.0})
    _, schedule, _ = load_model(path)
    assert (schedule.gamma_min, schedule.gamma_max) == (-3.0, 7.0)


@pytest.mark.parametrize("train_config", [None, {}, {"gamma_min": -3.0}])
def test_load_model_refuses_a_checkpoint_without_gamma_bounds(tmp_path, train_config):
    path = _checkpoint(tmp_path / "b.pt", train_config)
    with pytest.raises(CheckpointError, match=r"train_config\.gamma_max"):
        load_model(path)
