"""What both evaluation stages (probe, intervene) share: the scheduled checkpoints of a run,
the classifier checked against the run's grid, the device and threads their section names, and
a checkpoint loaded on a device (docs/method.md §4)."""

from __future__ import annotations

from pathlib import Path

from conceptspace.devices import pick_device, set_threads
from conceptspace.io import ArtifactError
from conceptspace.measure import classifier
from conceptspace.model.checkpoints import checkpoint_path, load_model


def expected_checkpoints(steps: list[int], ckpt_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of each scheduled checkpoint, each of which must exist."""
    out = []
    for step in steps:
        path = checkpoint_path(Path(ckpt_dir), step)
        if not path.exists():
            raise ArtifactError(
                f"{path}: checkpoint missing (train.checkpoints schedules "
                f"step {step}); re-run the train stage"
            )
        out.append((step, path))
    return out


def classifier_for(params, run_id: str, path: str | Path):
    """``(classifier, grid)``: the fitted classifier, refused unless it was fitted for this
    run's concepts, image size and separations."""
    probe, meta = classifier.load_classifier(path)
    grid = params.grid_for(run_id)
    classifier.check_compatible(
        {**meta, "file": str(path)}, grid.concepts, params.synthesize.image_size, grid.separations
    )
    return probe, grid


def prepare(params, stage: str, run_id: str, ckpt_dir: str | Path, classifier_path: str | Path):
    """``(checkpoints, classifier, grid, device)`` for an evaluation ``stage`` (``probe`` or
    ``intervene``, the params section that names its device and threads), everything checked
    before any work starts: every scheduled checkpoint present, the classifier fitted for this
    run, the device available. The classifier is moved to the device and the threads set."""
    section = getattr(params, stage)
    ckpts = expected_checkpoints(params.checkpoint_steps(), ckpt_dir)
    probe, grid = classifier_for(params, run_id, classifier_path)
    device = pick_device(section.device, f"{stage}.device")
    set_threads(section.threads)
    return ckpts, probe.to(device), grid, device


def load_on(path: Path, device: str):
    """``(net, schedule)`` of a checkpoint, in eval mode, on ``device``."""
    net, schedule, _ = load_model(path)
    return net.to(device), schedule.to(device)
