"""conceptspace/devices.py: the device a params section asks for, refused by its key when it
cannot be had."""

from __future__ import annotations

import pytest
import torch

from conceptspace.devices import pick_device
from conceptspace.params import ParamsError


def test_auto_and_cpu():
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu_is_refused_by_key():
    with pytest.raises(ParamsError, match=r"^probe\.device = 'cuda': no CUDA device"):
        pick_device("cuda", "probe.device")
