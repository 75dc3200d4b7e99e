"""Synthesize the concept dataset of one sweep point and seed.

    python -m stages.synthesize --run c040 --seed 0 \
        --dataset results/synthesize/c040/seed0/dataset.npz \
        --card results/synthesize/c040/seed0/card.json \
        --samples results/synthesize/c040/seed0/samples.png

Writes the dataset (npz, see conceptspace.data.dataset), its card (json: counts per class and split,
separations, measured concept signal per concept, held-out classes, masking) and a PNG grid of
samples per class. Same params and seed give byte-identical files. With
``synthesize.source: folder`` the images come from a CelebA-style folder (conceptspace.data.folder).
"""

from __future__ import annotations

import sys

import conceptspace.data.dataset as dataset
from conceptspace.figures.style import sample_grid
from conceptspace.io import write_json, write_npz
from stages.common import entry, load, parser


def run(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--dataset", required=True)
    p.add_argument("--card", required=True)
    p.add_argument("--samples", required=True)
    args = p.parse_args(argv)
    params = load(args)

    grid, mask = params.grid_for(args.run), params.mask_for(args.run)
    data = dataset.synthesize(grid, params.synthesize, args.seed, mask=mask)
    card = dataset.dataset_card(
        grid, params.synthesize, data, run=args.run, seed=args.seed, mask=mask
    )
    write_npz(args.dataset, **data)
    write_json(args.card, card)

    rows = [data["images"][data["class_id"] == k][:8] for k in range(grid.n_classes)]
    labels = [
        f"{name}{' (held out)' if grid.is_held_out(k) else ''}"
        for k, name in enumerate(grid.class_names)
    ]
    seps = ", ".join(f"{k} {v:g}" for k, v in grid.separations.items()) or params.synthesize.source
    if card["mask"]:
        m = card["mask"]
        seps += f"; {m['concept']} masked in {m['n_masked']}/{m['n_class']} {m['class']}"
    sample_grid(rows, labels, args.samples, title=f"{args.run} seed {args.seed}: {seps}")
    signal = ", ".join(f"{k} {v:.4f}" for k, v in card["concept_signal"].items())
    print(
        f"synthesize {args.run} seed {args.seed}: {len(data['images'])} images; "
        f"concept signal (pixel MSE) {signal}",
        file=sys.stderr,
    )


main = entry(run)

if __name__ == "__main__":
    sys.exit(main())
