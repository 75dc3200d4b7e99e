"""A small piece of every numeric path of the pipeline, for tests/test_numerics.py: renders a
class of the default grid (numpy), trains the default U-Net a few steps (oneDNN convolutions,
MKL products, PyTorch's kernels, AdamW) and samples with both samplers. Prints one JSON line:
the sha256 of all the bytes it made, and the numbers themselves for tolerance checks.

    python tests/numerics_workload.py
"""

from conceptspace import numerics

numerics.pin()

import hashlib  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from conceptspace.data.concepts import ConceptGrid  # noqa: E402
from conceptspace.data.render import conditioning, render, sample_attributes  # noqa: E402
from conceptspace.model.diffusion import sample, vdm_loss  # noqa: E402
from conceptspace.model.schedule import LogSNRSchedule  # noqa: E402
from conceptspace.model.unet import UNet, UNetConfig  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    grid = ConceptGrid(concepts=("color", "size"), separations={"color": 0.4, "size": 0.32})
    rng = np.random.default_rng(0)
    attrs = sample_attributes(grid, np.tile(grid.class_bits(0), (32, 1)), rng)
    images = render(attrs, 16, rng, blur_px=0.5, noise=1e-3) * 2 - 1
    cond = conditioning(grid, attrs)
    torch.manual_seed(0)
    net, schedule = UNet(UNetConfig()), LogSNRSchedule(-13.3, 5.0)
    params = list(net.parameters()) + list(schedule.parameters())
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.01)
    gen = torch.Generator().manual_seed(1)
    x, c = torch.from_numpy(images), torch.from_numpy(cond)
    losses = []
    for _ in range(5):
        loss = vdm_loss(net, schedule, x, c, generator=gen)["total"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    shape = (3, 16, 16)
    with torch.no_grad():
        z_a = sample(net, schedule, c[:8], steps=5, generator=gen, image_shape=shape)
        z_d = sample(
            net, schedule, c[:8], steps=5, generator=gen, image_shape=shape, sampler="ddim"
        )
    h = hashlib.sha256(images.tobytes())
    for p in net.state_dict().values():
        h.update(p.numpy().tobytes())
    h.update(z_a.numpy().tobytes() + z_d.numpy().tobytes())
    out = {
        "sha256": h.hexdigest(),
        "losses": losses,
        "samples": torch.cat([z_a, z_d]).flatten().tolist(),
        "effective": numerics.effective(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
