"""The sections of ``params.yaml``: one typed model per section (the sweep's entries, the grid,
one per stage), each checking its own keys. :class:`conceptspace.params.Params` assembles them
and checks the relations between sections; it is what the pipeline loads.

A section is the one statement of its settings, their ranges and the relations between them:
the library takes it as it is (``TrainConfig.from_section(params.train)``,
``UNetConfig.from_section(params.train.net, image_size, cond_dim)``), a library config built
without params is checked by it (:func:`check_values`), and the JSON schema is generated from
these models (:func:`conceptspace.params.write_schema`).
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from conceptspace.data.concepts import MAX_SEPARATION, SEPARATED

RUN_ID = r"^[a-z][a-z0-9_]*$"
CONCEPT_NAME = r"^[A-Za-z0-9_]+$"  # shapes concepts, or attribute names of a folder's table
VALUE_NAME = r"^[a-z0-9]+$"  # value names of a folder grid (joined by "_" in class names)


class ParamsError(ValueError):
    """Invalid parameters; the message names the key and the value."""


def keyed(message: str) -> PydanticCustomError:
    """An error whose message already names its key (relative to the validated model)."""
    return PydanticCustomError("keyed", "{message}", {"message": message})


def key_of(parts) -> str:
    """The dotted key of a location (``train.net.channels``; ``<root>`` for the whole)."""
    return ".".join(str(p) for p in parts if p not in ("[key]",)) or "<root>"


def _lookup(doc: Any, loc) -> Any:
    for p in loc:
        try:
            doc = doc[p]
        except (KeyError, IndexError, TypeError):
            return None
    return doc


def describe(e: ValidationError, doc: Any = None, where: tuple = ()) -> list[str]:
    """One line per error of ``e``: the key and the value, then what is wrong
    (``train.lr = 2: Input should be ...``). ``doc`` is what was validated (for values pydantic
    does not report); ``where`` the key of that within the params document."""
    lines = []
    for err in e.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        value = err.get("input", _lookup(doc, loc))
        msg = err["msg"].removeprefix("Value error, ")
        key = key_of([*where, *loc])
        if err["type"] == "keyed":  # our own validators name key and value themselves
            lines.append(msg if key == "<root>" else f"{key}.{msg}")
        else:
            lines.append(f"{key} = {value!r}: {msg}")
    return lines


@cache
def _field(section: type[BaseModel], key: str) -> TypeAdapter:
    info = section.model_fields[key]
    return TypeAdapter(Annotated[(info.annotation, *info.metadata)])


def check_values(section: type[BaseModel], values: dict[str, Any], where: str) -> None:
    """Check the values of a config built by a caller of the library (``TrainConfig``,
    ``UNetConfig``) as params are checked: each by the field of ``section`` of the same name
    (its type and range) and, when every field of the section is given, by the section's
    relations between them. So each check is stated once, here, wherever a value comes from.
    Raises :class:`ParamsError` naming ``<where>.<key> = <value>``."""
    if set(section.model_fields) <= set(values):
        try:
            section.model_validate({k: values[k] for k in section.model_fields})
        except ValidationError as e:
            raise ParamsError("; ".join(describe(e, values, tuple(where.split("."))))) from None
        return
    for key, value in values.items():
        try:
            _field(section, key).validate_python(value)
        except ValidationError as e:
            raise ParamsError("; ".join(describe(e, value, (*where.split("."), key)))) from None


def _real(v: Any) -> Any:
    # Accept ints and floats, but not bools or strings (YAML 1.1 vs 1.2 disagree on those).
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError("must be a number")
    return float(v)


Real = Annotated[float, BeforeValidator(_real)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- the sweep ------------------------------------------------------------------------------
class Separations(Section):
    """Separation of the class means per concept (the concept-signal knob)."""

    color: Annotated[Real, Field(gt=0, le=MAX_SEPARATION["color"])] | None = None
    size: Annotated[Real, Field(gt=0, le=MAX_SEPARATION["size"])] | None = None
    background: Annotated[Real, Field(gt=0, le=MAX_SEPARATION["background"])] | None = None

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in SEPARATED if getattr(self, k) is not None}


class Run(Separations):
    """One sweep point: separations (shapes data) and the masked fraction (§7.6)."""

    mask: Real = Field(0.0, ge=0, le=1)  # share of synthesize.mask.class's training images


ConceptName = Annotated[str, Field(pattern=CONCEPT_NAME)]
ValueName = Annotated[str, Field(pattern=VALUE_NAME)]


class Grid(Section):
    concepts: list[ConceptName] = Field(min_length=1)
    held_out: list[dict[str, str]] | None = None
    values: dict[str, Annotated[list[ValueName], Field(min_length=2, max_length=2)]] | None = None

    @field_validator("concepts")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("concepts must be unique")
        return v


def default_value_names(attribute: str) -> tuple[str, str]:
    """Value names of a folder attribute without ``grid.values``: ``Male`` -> (nomale, male)."""
    name = attribute.lower().replace("_", "")
    return f"no{name}", name


# ---- one section per stage ----------------------------------------------------------------
class Folder(Section):
    """A CelebA-style folder: ``<root>/<images>/*.jpg|png`` and ``<root>/<attributes>``."""

    root: str = Field(min_length=1)
    images: str = Field("img_align_celeba", min_length=1)
    attributes: str = Field("list_attr_celeba.txt", min_length=1)


class Mask(Section):
    """Underspecified prompts: which class's training images lose which concept's entries."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    class_: dict[str, str] = Field(alias="class", min_length=1)
    concept: ConceptName


class Synthesize(Section):
    image_size: StrictInt = Field(ge=8, le=128)
    n_per_class: StrictInt = Field(ge=1)  # training images per training class
    val_fraction: Real = Field(ge=0, lt=1)
    n_held_out: StrictInt = Field(ge=1)  # class-mean images per held-out class (held-out loss)
    blur_px: Real = Field(ge=0, le=4)  # shapes only (ignored for folder data)
    noise: Real = Field(ge=0, le=0.1)  # shapes only
    signal_samples: StrictInt = Field(ge=1)  # shapes only: pairs for the concept signal
    source: Literal["shapes", "folder"] = "shapes"
    folder: Folder | None = None  # required with source = folder
    mask: Mask | None = None  # what runs.<id>.mask > 0 masks


class Net(Section):
    """U-Net architecture (conceptspace.model.unet.UNetConfig); image size comes from the data."""

    channels: list[StrictInt] = Field(min_length=1, max_length=5)
    blocks_per_level: StrictInt = Field(ge=1, le=4)
    attention: StrictBool
    heads: StrictInt = Field(ge=1)
    groups: StrictInt = Field(ge=1)
    dropout: Real = Field(ge=0, lt=1)
    time_dim: StrictInt = Field(ge=2)
    init_scale: Real = Field(gt=0)

    @model_validator(mode="after")
    def _divisible(self) -> Net:
        for c in self.channels:
            if c < 1 or c % self.groups:
                raise keyed(
                    f"channels = {self.channels}: every channel count must be a "
                    f"positive multiple of groups = {self.groups}"
                )
        if self.attention and self.channels[-1] % self.heads:
            raise keyed(f"heads = {self.heads}: must divide channels[-1] = {self.channels[-1]}")
        if self.time_dim % 2:
            raise keyed(f"time_dim = {self.time_dim}: must be even")
        return self

    def image_size_problem(self, image_size: int) -> str | None:
        """Why this U-Net cannot take images of ``image_size`` pixels, or None: each of its
        ``len(channels) - 1`` downsamplings halves the image (docs/method.md §3.2)."""
        levels = len(self.channels) - 1
        if image_size % 2**levels:
            channels = list(self.channels)
            return f"must be divisible by 2**{levels} for train.net.channels = {channels}"
        return None


def checkpoint_steps(first: int, last: int, count: int) -> list[int]:
    """Square-root spaced steps ⌊linspace(√first, √last, count)²⌋, last forced to ``last``,
    de-duplicated and sorted. (500, 20000, 60) → [500, 594, 696, 807, ..., 19433, 20000].
    """
    if not 1 <= first <= last or count < 1:
        raise ValueError(f"need 1 <= first <= last and count >= 1, got {first}, {last}, {count}")
    # The small offset keeps exact squares from flooring to n − 1 after float round-off.
    steps = np.floor(np.linspace(np.sqrt(first), np.sqrt(last), count) ** 2 + 1e-6).astype(int)
    steps[-1] = last
    return sorted({int(s) for s in steps})


class Checkpoints(Section):
    first: StrictInt = Field(ge=1)  # first checkpoint step; the last is train.steps
    count: StrictInt = Field(ge=2, le=1000)  # square-root spaced checkpoints


class Train(Section):
    net: Net
    steps: StrictInt = Field(ge=1)
    batch_size: StrictInt = Field(ge=1)
    lr: Real = Field(gt=0, le=1)
    weight_decay: Real = Field(ge=0)
    grad_clip: Real = Field(ge=0)  # global gradient-norm clip; 0 disables (paper: 0.01)
    p_uncond: Real = Field(ge=0, lt=1)  # classifier-free guidance: null-prompt probability
    # decay of the weight average that checkpoints are evaluated with; 0: the raw weights, as
    # the authors (docs/method.md §3.3)
    ema: Real = Field(ge=0, lt=1)
    checkpoints: Checkpoints
    device: Literal["auto", "cpu", "cuda"]
    threads: StrictInt = Field(ge=1, le=256)
    # Runs trained together as one batched model (conceptspace.model.ensemble); 1 = one per job.
    ensemble: StrictInt = Field(1, ge=1, le=64)

    @model_validator(mode="after")
    def _schedule(self) -> Train:
        if self.checkpoints.first > self.steps:
            raise keyed(
                f"checkpoints.first = {self.checkpoints.first}: must not exceed "
                f"steps = {self.steps}"
            )
        return self


class FitClassifier(Section):
    """The concept probe: trained on renders of all classes pooled over these grids (shapes),
    or on the folder's images of all classes (folder; ``separations`` then absent)."""

    separations: list[Separations] | None = Field(None, min_length=1)
    n_per_class: StrictInt = Field(ge=1)  # renders per class per grid
    n_test: StrictInt = Field(ge=1)  # held-out renders per class per grid for metrics
    steps: StrictInt = Field(ge=1)
    batch_size: StrictInt = Field(ge=1)
    lr: Real = Field(gt=0, le=1)
    noise_max: Real = Field(ge=0, le=0.5)  # augmentation noise std ~ U[0, noise_max]
    width: StrictInt = Field(ge=1)
    seed: StrictInt = Field(ge=0)
    threads: StrictInt = Field(ge=1, le=256)
    device: Literal["auto", "cpu", "cuda"] = "auto"


Sampler = Literal["ancestral", "ddim"]  # conceptspace/model/diffusion.py SAMPLERS


class Probe(Section):
    n_train: StrictInt = Field(ge=1)  # prompts per training class (sampled within its ranges)
    n_held_out: StrictInt = Field(ge=1)  # class-mean prompts per held-out class
    sampler: Sampler = "ancestral"
    sampler_steps: StrictInt = Field(ge=1, le=1000)
    threads: StrictInt = Field(ge=1, le=256)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where checkpoints are sampled


class ConceptPush(Section):
    """An elicitation towards the held-out class along one or more concepts, at several doses
    (docs/method.md §6.1)."""

    concepts: list[ConceptName] = Field(min_length=1)
    doses: list[Real] = Field(min_length=1)

    @field_validator("concepts")
    @classmethod
    def _distinct_concepts(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"concepts must be distinct: {v} repeats one")
        return v

    @field_validator("doses")
    @classmethod
    def _distinct_positive(cls, v: list[float]) -> list[float]:
        if any(d <= 0 for d in v):
            raise ValueError("doses must be > 0 (dose 0 is the naive prompt, already measured)")
        if len(set(v)) != len(v):
            raise ValueError(f"doses must be distinct: {v} repeats one (the same prompt twice)")
        return sorted(v)


class Intervene(Section):
    methods: list[Literal["naive", "overprompt", "linear", "guidance"]] = Field(min_length=1)
    n: StrictInt = Field(ge=1)  # images per (held-out class, method, dose, checkpoint)
    sampler: Sampler = "ancestral"
    sampler_steps: StrictInt = Field(ge=1, le=1000)
    overprompt: ConceptPush  # dose: fraction of the way from the class mean to the range's edge
    linear: ConceptPush  # dose s: e(h) + s * d at every block, d weighing the concepts equally
    guidance: list[Real] = Field(min_length=1)  # guidance weights w (train.p_uncond > 0)
    threads: StrictInt = Field(ge=1, le=256)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("methods")
    @classmethod
    def _unique_methods(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("methods must be unique")
        if "naive" not in v:  # the table would hold no baseline (and the stage no batch)
            raise ValueError("must include 'naive', the baseline every lead is measured from")
        return v


class Analyze(Section):
    sigma: Real = Field(ge=0)  # trajectory smoothing along checkpoints (paper: 2)
    lt_sigma: Real = Field(ge=0)  # smoothing before learning times (paper: 1.5)
    thresholds: list[Real] = Field(min_length=1)  # learning-time thresholds (0.8 and 0.9)
    persistence: StrictInt = Field(ge=1)  # consecutive checkpoints above the threshold
    saturation_tol: Real = Field(gt=0)  # training saturation: mean squared distance below
    capability_threshold: Real = Field(gt=0, le=1)  # hidden-capability emergence threshold
    ready_acc: Real = Field(
        gt=0,
        le=1,
        description="memorization is read from the first checkpoint at which the training "
        "classes are recognisable: smoothed mean per-image accuracy >= ready_acc",
    )
    turn_margin: Real = Field(
        ge=0,
        description="a held-out trajectory turns when it ends at least this much closer to its "
        "own corner than its mean distance during memorization (corners are 1 apart)",
    )
    convergence_acc: Real = Field(
        gt=0,
        le=1,
        description="training has converged once every training class has at least this "
        "smoothed accuracy on every concept (distance at convergence, docs/method.md §7.1)",
    )
    emergence_sigma: Real = Field(
        ge=0, description="smoothing of capability curves before emergence (checkpoints)"
    )
    emergence_persistence: StrictInt = Field(
        ge=1, description="consecutive checkpoints a capability curve must stay above threshold"
    )

    @field_validator("thresholds")
    @classmethod
    def _in_unit(cls, v: list[float]) -> list[float]:
        if any(not 0 < t <= 1 for t in v):
            raise ValueError("thresholds must lie in (0, 1]")
        return v
