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
from conceptspace.io import ArtifactError, write_json
from conceptspace.params import ParamsError
from stages.common import entry, load, parser, pick_device, set_threads

NOISE_LEVELS = (0.0, 0.02, 0.05, 0.08)


def check_sweep_covered(params) -> None:
    """Every separation of the sweep must lie within the probe's training range."""
    seps = [s.as_dict() for s in params.fit_classifier.separations or []]
    if not seps:
        return
    for run_id, run_seps in params.runs.items():
        for concept, value in run_seps.as_dict().items():
            lo, hi = min(s[concept] for s in seps), max(s[concept] for s in seps)
            if not lo <= value <= hi:
                raise ParamsError(
                    f"runs.{run_id}.{concept} = {value}: outside the probe's training range "
                    f"[{lo}, {hi}] (fit_classifier.separations); widen that list"
                )


def run(argv=None) -> None:
    p = parser(__doc__, identity=False)
    p.add_argument("--classifier", required=True)
    p.add_argument("--metrics", required=True)
    args = p.parse_args(argv)
    params = load(args)
    check_sweep_covered(params)
    device = pick_device(params.fit_classifier.device, "fit_classifier.device")
    set_threads(params.fit_classifier.threads)

    fp, syn = params.fit_classifier, params.synthesize
    concepts = tuple(params.grid.concepts)
    cfg = classifier.ClassifierConfig.from_section(fp)
    if syn.source == "folder":
        return fit_on_folder(params, cfg, args, device)
    grids = [ConceptGrid(concepts, s.as_dict()) for s in fp.separations]
    probe, history = classifier.fit(
        grids, syn.image_size, cfg, blur_px=syn.blur_px, noise=syn.noise, device=device
    )

    # Held-out accuracy on the training grids and on every sweep point.
    sweep = [params.grid_for(r) for r in params.run_ids]
    eval_grids = grids + [g for g in sweep if g.separations not in [x.separations for x in grids]]
    rows = classifier.evaluate(
        probe,
        eval_grids,
        syn.image_size,
        noise_levels=NOISE_LEVELS,
        n_per_class=fp.n_test,
        blur_px=syn.blur_px,
    )
    write_outputs(
        args, probe, classifier.classifier_meta(grids, syn.image_size, cfg), rows, history
    )


def fit_on_folder(params, cfg, args, device: str = "cpu") -> None:
    """The probe of folder data: real images of all classes, seeded train/test split."""
    grid = params.grid_for(params.run_ids[0])
    folder = ImageFolder.from_params(params.synthesize.folder)
    ids = folder.class_ids(grid)
    counts = folder.counts(grid)
    few = [name for name, c in counts.items() if c < 2]
    if few:
        raise ArtifactError(
            f"{folder.attributes.path}: class(es) {few} have fewer than 2 images; the probe "
            f"needs training and test images of every class (counts {counts})"
        )
    train, test = classifier.split_per_class(ids, cfg.n_per_class, cfg.n_test, cfg.seed)
    size = params.synthesize.image_size
    values = grid.all_bits()[ids]
    x_test = folder.load(test, size)
    probe, history = classifier.fit_arrays(
        folder.load(train, size), values[train], len(grid.concepts), cfg, device=device
    )
    rows = classifier.evaluate_arrays(
        probe, x_test, values[test], grid.concepts, noise_levels=NOISE_LEVELS
    )
    by_class = {}  # noise-free accuracy per class and concept (read the held-out class's)
    for k in range(grid.n_classes):
        sel = ids[test] == k
        by_class[grid.class_name(k)] = {
            r["concept"]: r["accuracy"]
            for r in classifier.evaluate_arrays(
                probe, x_test[sel], values[test][sel], grid.concepts, noise_levels=(0.0,)
            )
        }
    meta = classifier.classifier_meta(
        [grid], size, cfg, source="folder", n_train=int(len(train)), n_test=int(len(test))
    )
    write_outputs(args, probe, meta, rows, history, counts=counts, accuracy_by_class=by_class)


def write_outputs(args, probe, meta, rows, history, **extra) -> None:
    concepts = meta["concepts"]
    metrics = {
        "min_accuracy": min(r["accuracy"] for r in rows),
        "min_accuracy_by_concept": {
            c: min(r["accuracy"] for r in rows if r["concept"] == c) for c in concepts
        },
        "noise_levels": list(NOISE_LEVELS),
        "final_loss": history[-1]["loss"] if history else None,
        "accuracy": rows,
        **extra,
    }
    classifier.save_classifier(args.classifier, probe, meta)
    write_json(args.metrics, metrics)
    print(
        f"fit_classifier: min held-out accuracy {metrics['min_accuracy']:.4f} over "
        f"{len({str(r['separations']) for r in rows})} grid(s) x noise {list(NOISE_LEVELS)}",
        file=sys.stderr,
    )


main = entry(run)

if __name__ == "__main__":
    sys.exit(main())
