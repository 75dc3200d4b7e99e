"""The concept probe: a small CNN with one 2-way head per concept (docs/method.md §4.1).

The probe is the *measuring instrument* of the study, not the thing under study. It is an
**oracle**: it is trained on ground-truth renders of **all** classes, the held-out combination
included, pooled over several concept grids whose separations span the sweep it will measure,
so that its readings do not depend on the separation. Generated images are the sampler's raw
``z_0``: unclipped and with residual noise of std about 0.04-0.08. The probe is therefore trained
with Gaussian noise augmentation, std ``sigma ~ U[0, noise_max]`` per image, and the noisy images
are not clipped either.

Differences from the paper's probe (a 0.22 M-parameter CUNet trained for 10k steps): ours is a
plain four-layer CNN of 74 k parameters (width 32), trained for 2,000 steps of batch 64 at
lr 3e-3 with cosine decay. At 16 px that takes about 32 s on one CPU thread (about 9 ms per step
on two idle threads); these settings come closer to the ideal-observer accuracy on noisy images
than batch 128 at lr 1e-3 in twice the time. Use one torch thread when other processes share
the cores: with two, every step waits on the descheduled thread (190 s measured on a loaded
2-core machine).

Pool grids that span the sweep: between its training separations the probe interpolates, and
that is not guaranteed (a width-16 probe fitted on color separations {0.15, 0.8} classified
size at color 0.4 only 93% right; width 32 is at >= 99.4% over four seeds).

Artifacts: :func:`save_classifier` writes a plain dict that loads with ``weights_only=True``;
:func:`check_compatible` refuses to apply a probe to another concept grid, another image size,
or a separation outside the range it was trained on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from conceptspace.data.concepts import ConceptGrid
from conceptspace.data.render import render_classes
from conceptspace.io import ArtifactError, atomic_torch_save, read_torch

FORMAT = "conceptspace.probe.v1"
RENDER_KINDS = ("random", "mean")
"""``random``: attributes sampled within the class ranges; ``mean``: class-mean attributes."""
NOISE_LEVELS = (0.0, 0.02, 0.05, 0.08)
"""Noise added to held-out images for the accuracy metrics: the sampler's raw output carries
residual noise sigma_0 that falls from about 0.07 to 0.005 over training."""

_EVAL_STREAM = 0x5EE7  # mixes evaluate()'s seed so its renders differ from fit()'s
_SEP_TOL = 1e-9


class ConceptClassifier(nn.Module):
    """Small CNN with one 2-way head per concept.

    conv3x3 3->w, conv3x3 w->w stride 2, conv3x3 w->2w, conv3x3 2w->2w stride 2 (GELU after
    each), then concat(global max pool, global mean pool) -> Linear(4w, 64) -> GELU ->
    Linear(64, 2 n_concepts). Global pooling makes it work for any image size >= 8 and
    (nearly) invariant to the object position.
    """

    def __init__(self, n_concepts: int, width: int = 32):
        super().__init__()
        if n_concepts < 1 or width < 1:
            raise ValueError(f"need n_concepts >= 1 and width >= 1, got {n_concepts}, {width}")
        self.n_concepts = int(n_concepts)
        self.width = int(width)
        w = self.width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(w, w, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.head = nn.Sequential(nn.Linear(4 * w, 64), nn.GELU(), nn.Linear(64, 2 * n_concepts))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, 3, S, S]`` -> logits ``[B, n_concepts, 2]``."""
        h = self.features(x)
        h = torch.cat([h.amax(dim=(2, 3)), h.mean(dim=(2, 3))], dim=1)
        return self.head(h).view(len(x), self.n_concepts, 2)


@dataclass(frozen=True)
class ClassifierConfig:
    """Concept classifier training settings; ``n_test`` is for callers that report held-out
    accuracy."""

    width: int = 32
    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-3  # peak rate, cosine-decayed to 0 over ``steps``
    weight_decay: float = 0.01
    noise_max: float = 0.1  # augmentation std ~ U[0, noise_max] per image, unclipped
    n_per_class: int = 1024  # training renders per class per grid
    n_test: int = 256  # test renders per class per grid
    seed: int = 0

    @classmethod
    def from_section(cls, section: object) -> ClassifierConfig:
        """The config of a ``fit_classifier`` params section: every field the section has by
        the same name; the others keep their defaults."""
        return cls(
            **{f.name: getattr(section, f.name) for f in fields(cls) if hasattr(section, f.name)}
        )


# ---- data ---------------------------------------------------------------------------------
def _same_concepts(grids: Sequence[ConceptGrid]) -> tuple[str, ...]:
    if not grids:
        raise ValueError("need at least one concept grid")
    concepts = grids[0].concepts
    for g in grids[1:]:
        if g.concepts != concepts:
            raise ValueError(
                f"all grids must have the same concepts: {list(concepts)} vs {list(g.concepts)}"
            )
    return concepts


def make_classifier_data(
    grids: list[ConceptGrid],
    image_size: int,
    n_per_class: int,
    *,
    blur_px: float,
    noise: float,
    seed: int,
    at_mean: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground-truth renders of every class of every grid, ``n_per_class`` each.

    Returns ``(images [N, 3, S, S] float32, values [N, n_concepts] int64, grid_index [N])``,
    grid by grid, class by class. Grid ``g`` draws from ``default_rng([seed, g])``.
    """
    _same_concepts(grids)
    images, values, index = [], [], []
    for g, grid in enumerate(grids):
        ids = np.repeat(np.arange(grid.n_classes), n_per_class)
        rng = np.random.default_rng([seed, g])
        img, _, val = render_classes(
            grid, ids, image_size, rng, at_mean=at_mean, blur_px=blur_px, noise=noise
        )
        images.append(img)
        values.append(val.astype(np.int64))
        index.append(np.full(len(ids), g, dtype=np.int64))
    return np.concatenate(images), np.concatenate(values), np.concatenate(index)


# ---- training -----------------------------------------------------------------------------
def fit(
    grids: list[ConceptGrid],
    image_size: int,
    cfg: ClassifierConfig,
    *,
    blur_px: float = 1.0,
    noise: float = 1e-3,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[ConceptClassifier, list[dict]]:
    """Train a probe on renders of all classes of ``grids`` (pooled).

    AdamW with cosine learning-rate decay to 0 (it makes the noise-free accuracy reach 100%
    in fewer steps than a constant rate), loss = cross-entropy summed over concepts, batches
    drawn with replacement, Gaussian noise augmentation with std ``U[0, cfg.noise_max]`` per
    image (no clipping). Initialisation, batches and augmentation all come from ``cfg.seed``,
    so the result is deterministic for a given machine and number of torch threads; the global
    torch RNG is left untouched. Threads are the caller's choice (see the module docstring).
    On another ``device`` (CUDA) the batches and their noise are still drawn on the CPU from
    the same generator, so the probe sees the same data as on the CPU.

    Returns the probe (on ``device``) in eval mode and a history
    ``[{"step", "loss", "seconds"}]`` with the mean training loss of each 100-step window.
    """
    concepts = _same_concepts(grids)
    images, values, _ = make_classifier_data(
        grids, image_size, cfg.n_per_class, blur_px=blur_px, noise=noise, seed=cfg.seed
    )
    return fit_arrays(images, values, len(concepts), cfg, progress=progress, device=device)


def fit_arrays(
    images: np.ndarray,
    values: np.ndarray,
    n_concepts: int,
    cfg: ClassifierConfig,
    *,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[ConceptClassifier, list[dict]]:
    """Train a probe on given images ``[N, 3, S, S]`` with value indices ``[N, n_concepts]``
    (e.g. real images of a folder); the training procedure of :func:`fit`."""
    from tqdm.auto import tqdm

    values = np.asarray(values, dtype=np.int64).reshape(len(images), n_concepts)
    x_all = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    y_all = torch.from_numpy(values)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        probe = ConceptClassifier(n_concepts, cfg.width).to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(probe.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / cfg.steps))
    )

    probe.train()
    history: list[dict] = []
    window: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(
        range(1, cfg.steps + 1), desc="probe", disable=None if progress else True, mininterval=1.0
    )
    for step in bar:
        idx = torch.randint(len(x_all), (cfg.batch_size,), generator=gen)
        x, y = x_all[idx], y_all[idx]
        sigma = cfg.noise_max * torch.rand(len(x), 1, 1, 1, generator=gen)
        x = x + sigma * torch.randn(x.shape, generator=gen)
        logits = probe(x.to(device))
        y = y.to(device)
        loss = F.cross_entropy(logits.reshape(-1, 2), y.reshape(-1), reduction="sum") / len(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        window.append(loss.item())
        if step % 100 == 0 or step == cfg.steps:
            mean = float(np.mean(window))
            history.append({"step": step, "loss": mean, "seconds": time.perf_counter() - t0})
            window = []
            bar.set_postfix(loss=f"{mean:.4f}")
    bar.close()
    return probe.eval(), history


# ---- inference and evaluation ---------------------------------------------------------------
@torch.no_grad()
def predict(
    probe: ConceptClassifier, images: np.ndarray | Tensor, batch_size: int = 1024
) -> np.ndarray:
    """P(concept value index 1) per image and concept, ``[N, n_concepts]`` float32 (numpy).

    Images are used as given (no clipping), e.g. the sampler's raw ``z_0``; they are classified
    on the probe's device.
    """
    x = torch.as_tensor(images, dtype=torch.float32, device=next(probe.parameters()).device)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images [N, 3, S, S], got shape {tuple(x.shape)}")
    was_training = probe.training
    probe.eval()
    out = [
        torch.softmax(probe(x[i : i + batch_size]), dim=-1)[..., 1]
        for i in range(0, len(x), batch_size)
    ]
    probe.train(was_training)
    if not out:
        return np.zeros((0, probe.n_concepts), dtype=np.float32)
    return torch.cat(out).cpu().numpy().astype(np.float32, copy=False)


def evaluate(
    probe: ConceptClassifier,
    grids: list[ConceptGrid],
    image_size: int,
    *,
    noise_levels: Sequence[float] = NOISE_LEVELS,
    n_per_class: int,
    blur_px: float = 1.0,
    seed: int = 1,
) -> list[dict]:
    """Held-out accuracy on fresh renders, per grid, render kind, added noise and concept.

    Render kinds: ``"random"`` (attributes sampled within the class ranges) and ``"mean"``
    (class-mean attributes, like the naive prompts). Renders use pixel noise 1e-3 as in
    training; the evaluation noise of std ``noise`` is then added without clipping. The render
    seed is derived from ``seed`` through a separate stream, so it never coincides with the
    seed-``seed`` training renders of :func:`fit`.

    Rows: ``{"separations", "kind", "noise", "concept", "accuracy", "n"}``.
    """
    concepts = _same_concepts(grids)
    rows = []
    for g, grid in enumerate(grids):
        for k, kind in enumerate(RENDER_KINDS):
            stream = np.random.SeedSequence([seed, _EVAL_STREAM, g, k])
            render_seed = int(stream.generate_state(1)[0])
            images, values, _ = make_classifier_data(
                [grid],
                image_size,
                n_per_class,
                blur_px=blur_px,
                noise=1e-3,
                seed=render_seed,
                at_mean=kind == "mean",
            )
            noise_rng = np.random.default_rng([render_seed, 1])
            eps = noise_rng.standard_normal(images.shape, dtype=np.float32)
            rows += _accuracy_rows(
                probe, images, values, eps, noise_levels, concepts, dict(grid.separations), kind
            )
    return rows


def _accuracy_rows(probe, images, values, eps, noise_levels, concepts, separations, kind):
    """Rows of per-concept accuracy with ``level * eps`` added to ``images``, per level."""
    rows = []
    for level in noise_levels:
        correct = (predict(probe, images + np.float32(level) * eps) > 0.5) == (values == 1)
        for c, concept in enumerate(concepts):
            rows.append(
                {
                    "separations": separations,
                    "kind": kind,
                    "noise": float(level),
                    "concept": concept,
                    "accuracy": float(correct[:, c].mean()),
                    "n": int(len(values)),
                }
            )
    return rows


def evaluate_arrays(
    probe: ConceptClassifier,
    images: np.ndarray,
    values: np.ndarray,
    concepts: Sequence[str],
    *,
    noise_levels: Sequence[float] = NOISE_LEVELS,
    kind: str = "real",
    seed: int = 1,
) -> list[dict]:
    """Accuracy on given test images per added noise level and concept (rows as in
    :func:`evaluate`, with ``separations`` empty and ``kind`` as given)."""
    values = np.asarray(values).reshape(len(images), len(concepts))
    eps = np.random.default_rng([seed, _EVAL_STREAM]).standard_normal(
        images.shape, dtype=np.float32
    )
    return _accuracy_rows(probe, images, values, eps, noise_levels, concepts, {}, kind)


def split_per_class(
    class_id: np.ndarray, n_train: int, n_test: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded disjoint (train, test) indices: per class, up to ``n_test`` test items (at most
    half the class) and up to ``n_train`` training items from the rest; both sorted."""
    rng = np.random.default_rng([seed, _EVAL_STREAM])
    train, test = [], []
    for k in np.unique(class_id):
        members = rng.permutation(np.flatnonzero(class_id == k))
        t = min(n_test, len(members) // 2)
        test.append(members[:t])
        train.append(members[t : t + n_train])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


# ---- artifacts ---------------------------------------------------------------------------
def classifier_meta(
    grids: list[ConceptGrid], image_size: int, cfg: ClassifierConfig | None = None, **extra: Any
) -> dict:
    """The ``meta`` dict that :func:`save_classifier` stores and :func:`check_compatible` reads.

    Keys: ``concepts``, ``image_size``, ``train_separations`` (one dict per grid),
    ``separation_range`` (``{concept: [min, max]}``), ``config`` (when ``cfg`` is given), and
    any ``extra`` entries (e.g. accuracy rows).
    """
    concepts = list(_same_concepts(grids))
    seps = [{c: float(v) for c, v in g.separations.items()} for g in grids]
    rng = {c: [min(s[c] for s in seps), max(s[c] for s in seps)] for c in concepts if c in seps[0]}
    meta = {
        "concepts": concepts,
        "image_size": int(image_size),
        "train_separations": seps,
        "separation_range": rng,
    }
    if cfg is not None:
        meta["config"] = asdict(cfg)
    meta.update(extra)
    return meta


# ---- the probe of a study (stages/fit_classifier.py) ---------------------------------------
@dataclass(frozen=True)
class FittedProbe:
    """A fitted probe, its ``meta`` (:func:`classifier_meta`), its held-out accuracy rows, its
    training history and, for folder data, further metrics (``extra``)."""

    probe: ConceptClassifier
    meta: dict
    rows: list[dict]
    history: list[dict]
    extra: dict = field(default_factory=dict)

    def metrics(self) -> dict:
        """The study's ``metrics.json``: the lowest accuracy, over all rows and per concept,
        the noise levels, the final training loss, every row, and ``extra``."""
        rows, concepts = self.rows, self.meta["concepts"]
        return {
            "min_accuracy": min(r["accuracy"] for r in rows),
            "min_accuracy_by_concept": {
                c: min(r["accuracy"] for r in rows if r["concept"] == c) for c in concepts
            },
            "noise_levels": list(NOISE_LEVELS),
            "final_loss": self.history[-1]["loss"] if self.history else None,
            "accuracy": rows,
            **self.extra,
        }


def fit_on_grids(
    grids: list[ConceptGrid],
    sweep: list[ConceptGrid],
    image_size: int,
    cfg: ClassifierConfig,
    *,
    blur_px: float,
    noise: float,
    device: str | torch.device = "cpu",
) -> FittedProbe:
    """The probe of shapes data: fitted on renders of all classes of ``grids``, pooled
    (:func:`fit`), with its held-out accuracy (:func:`evaluate`, ``cfg.n_test`` renders per
    class) on those grids and on every other grid of the ``sweep``, at :data:`NOISE_LEVELS`."""
    probe, history = fit(grids, image_size, cfg, blur_px=blur_px, noise=noise, device=device)
    known = [x.separations for x in grids]
    eval_grids = grids + [g for g in sweep if g.separations not in known]
    rows = evaluate(
        probe,
        eval_grids,
        image_size,
        noise_levels=NOISE_LEVELS,
        n_per_class=cfg.n_test,
        blur_px=blur_px,
    )
    return FittedProbe(probe, classifier_meta(grids, image_size, cfg), rows, history)


def fit_on_folder(
    folder: Any, grid: ConceptGrid, image_size: int, cfg: ClassifierConfig, device: str = "cpu"
) -> FittedProbe:
    """The probe of folder data (a :class:`conceptspace.data.folder.ImageFolder`): fitted on
    the folder's real images of all classes, up to ``cfg.n_per_class`` per class, and tested
    on a disjoint, seeded set of up to ``cfg.n_test`` per class (kind ``real``); ``extra``
    holds the images per class and the noise-free accuracy per class and concept."""
    ids = folder.class_ids(grid)
    counts = folder.counts(grid)
    few = [name for name, c in counts.items() if c < 2]
    if few:
        raise ArtifactError(
            f"{folder.attributes.path}: class(es) {few} have fewer than 2 images; the probe "
            f"needs training and test images of every class (counts {counts})"
        )
    train, test = split_per_class(ids, cfg.n_per_class, cfg.n_test, cfg.seed)
    values = grid.all_bits()[ids]
    x_test = folder.load(test, image_size)
    probe, history = fit_arrays(
        folder.load(train, image_size), values[train], len(grid.concepts), cfg, device=device
    )
    rows = evaluate_arrays(probe, x_test, values[test], grid.concepts, noise_levels=NOISE_LEVELS)
    by_class = {}  # noise-free accuracy per class and concept (read the held-out class's)
    for k in range(grid.n_classes):
        sel = ids[test] == k
        by_class[grid.class_name(k)] = {
            r["concept"]: r["accuracy"]
            for r in evaluate_arrays(
                probe, x_test[sel], values[test][sel], grid.concepts, noise_levels=(0.0,)
            )
        }
    meta = classifier_meta(
        [grid], image_size, cfg, source="folder", n_train=int(len(train)), n_test=int(len(test))
    )
    return FittedProbe(
        probe, meta, rows, history, {"counts": counts, "accuracy_by_class": by_class}
    )


def _plain(obj: Any, where: str = "meta") -> Any:
    """Convert ``obj`` to types that ``torch.load(weights_only=True)`` accepts."""
    if isinstance(obj, bool | int | float | str) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{where}: cannot store a {type(obj).__name__} in a probe file")


def save_classifier(path: str | Path, probe: ConceptClassifier, meta: dict) -> None:
    """Atomically write ``{"format", "n_concepts", "width", "state_dict", "meta"}``.

    ``meta`` (see :func:`classifier_meta`) must hold ``concepts``, ``image_size``,
    ``train_separations`` and ``separation_range``; numpy scalars/arrays and tuples are
    converted to plain Python so the file loads with ``weights_only=True``.
    """
    missing = [k for k in ("concepts", "image_size", "separation_range") if k not in meta]
    if missing:
        raise ValueError(f"probe meta lacks {missing}; build it with classifier_meta()")
    obj = {
        "format": FORMAT,
        "n_concepts": probe.n_concepts,
        "width": probe.width,
        "state_dict": {k: v.detach().cpu().clone() for k, v in probe.state_dict().items()},
        "meta": _plain(meta),
    }
    path = Path(path)
    atomic_torch_save(obj, path, "classifier")  # byte for byte a direct torch.save


def load_classifier(path: str | Path) -> tuple[ConceptClassifier, dict]:
    """Rebuild a probe (eval mode, CPU) from its file; returns ``(probe, meta)``.

    ``meta["file"]`` is set to ``path`` so that :func:`check_compatible` can name it. Any
    problem (missing, truncated, not a probe file, weights that do not fit) raises
    :class:`ArtifactError` naming the file.
    """
    path = Path(path)
    obj = read_torch(path, "probe")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ArtifactError(f"probe {path}: format {found!r}, expected {FORMAT!r}")
    try:
        probe = ConceptClassifier(int(obj["n_concepts"]), int(obj["width"]))
        probe.load_state_dict(obj["state_dict"])
        meta = dict(obj["meta"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ArtifactError(f"probe {path}: cannot rebuild the probe ({e})") from None
    meta["file"] = str(path)
    return probe.eval(), meta


def check_compatible(
    meta: dict, concepts: Sequence[str], image_size: int, separations: dict[str, float]
) -> None:
    """Refuse to measure images the probe was not trained for (raises :class:`ArtifactError`).

    Checks the concept grid (names and order = head order), the image size, and that every
    separation lies within ``[min, max]`` of the probe's training separations for that concept.
    """
    name = f"probe {meta['file']}" if meta.get("file") else "probe"
    grid = f"concept grid {list(concepts)} (separations {dict(separations)})"
    if list(meta.get("concepts", [])) != list(concepts):
        raise ArtifactError(
            f"{name} was trained for concepts {meta.get('concepts')}, not for the {grid}"
        )
    if int(meta.get("image_size", -1)) != int(image_size):
        raise ArtifactError(
            f"{name} was trained on {meta.get('image_size')} px images, not {image_size} px "
            f"({grid})"
        )
    ranges = meta.get("separation_range", {})
    for concept, sep in separations.items():
        if concept not in ranges:
            continue
        lo, hi = ranges[concept]
        if not lo - _SEP_TOL <= float(sep) <= hi + _SEP_TOL:
            raise ArtifactError(
                f"{name}: {concept} separation {sep} is outside its training range "
                f"[{lo}, {hi}] ({grid})"
            )
