"""Fit the concept classifier: the instrument that places generated images in concept space.

    python -m stages.fit_classifier --classifier results/fit_classifier/classifier.pt \
        --metrics results/fit_classifier/metrics.json

A classifier with one 2-way head per concept, trained on ground-truth renders of *all*
classes (held-out ones included) pooled over ``fit_classifier.separations``, with Gaussian-noise
augmentation like the sampler's residual noise. ``metrics.json`` holds its held-out accuracy
per grid, concept, render kind (sampled or class-mean attributes) and added noise (0, 0.02,
0.05, 0.08: the sampler's raw output carries residual noise sigma_0 that falls from about
0.07 to 0.005 over training), for every separation of the sweep. Refuses a sweep whose
separations lie outside the range the probe is trained on.

Folder data (``synthesize.source: folder``): the probe is trained on the folder's real images of
*all* classes (held-out combination included, as the paper does), up to
``fit_classifier.n_per_class`` per class, and tested on a disjoint, seeded set of up to
``fit_classifier.n_test`` per class (kind ``real``). Its heads are the grid's attributes, so
the probe and intervene stages use it as is.
"""

from __future__ import annotations

import sys

import conceptspace.measure.classifier as classifier
from conceptspace.data.concepts import ConceptGrid
from conceptspace.data.folder import ImageFolder
from conceptspace.devices import pick_device, set_threads
from conceptspace.io import write_json
from stages.common import entry, load, parser


def run(argv=None) -> None:
    p = parser(__doc__, identity=False)
    p.add_argument("--classifier", required=True)
    p.add_argument("--metrics", required=True)
    args = p.parse_args(argv)
    params = load(args)
    params.check_probe_range()
    device = pick_device(params.fit_classifier.device, "fit_classifier.device")
    set_threads(params.fit_classifier.threads)

    fp, syn = params.fit_classifier, params.synthesize
    cfg = classifier.ClassifierConfig.from_section(fp)
    if syn.source == "folder":
        grid, folder = params.grid_for(params.run_ids[0]), ImageFolder.from_params(syn.folder)
        fitted = classifier.fit_on_folder(folder, grid, syn.image_size, cfg, device)
    else:
        grids = [ConceptGrid(tuple(params.grid.concepts), s.as_dict()) for s in fp.separations]
        sweep = [params.grid_for(r) for r in params.run_ids]
        fitted = classifier.fit_on_grids(
            grids, sweep, syn.image_size, cfg, blur_px=syn.blur_px, noise=syn.noise, device=device
        )

    metrics = fitted.metrics()
    classifier.save_classifier(args.classifier, fitted.probe, fitted.meta)
    write_json(args.metrics, metrics)
    print(
        f"fit_classifier: min held-out accuracy {metrics['min_accuracy']:.4f} over "
        f"{len({str(r['separations']) for r in fitted.rows})} grid(s) x noise "
        f"{metrics['noise_levels']}",
        file=sys.stderr,
    )


main = entry(run)

if __name__ == "__main__":
    sys.exit(main())
