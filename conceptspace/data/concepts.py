"""Concept grids: which concepts exist, their values, class means and ranges.

docs/method.md §2.2-2.5.

A *concept grid* is an ordered list of binary concepts. Every class is one combination of
concept values; its index is the row-major unravel over the concepts in grid order
(2x2 color x size: ``l = 2*color + size``). Index 0 of every concept is the *base* value, and a
class is held out when more than one of its concepts differs from the base (the "fid_axis"
rule), unless the held-out classes are listed explicitly.

Continuous attributes are set by *separations* (the concept signal knob):

- color (red, blue): RGB means red (.5+h, .5-h, .5-h), blue (.5-h, .5-h, .5+h); range mean +- sep/8
- size (large, small): radius means .45 + h, .45 - h (grid units); range mean +- 3 sep/8, >= 0.1
- background (light, dark): grey means .5 + h, .5 - h; range mean +- sep/8 per channel
- shape (circle, triangle): categorical, no separation

with h = sep / 2. Concepts that are not in the grid are fixed (color: the red of separation
0.4, size: radius 0.45, shape: circle) or nuisance (background: light pastel, each channel
uniform in [0.8, 1]).

The 11-d conditioning vector given to the model holds the *actual* sampled attribute values:
``[shape one-hot (2), x, y, object RGB (3), radius, background RGB (3)]``; entries of concepts
that are not in the grid are zero (position is never conditioned on).

*Attribute grids* (real images, e.g. CelebA, docs/method.md §7.2) name arbitrary binary attributes
(``ConceptGrid(("Male", "Smiling"), values={"Male": ("female", "male"), ...})``). They keep the
given concept order, have no separations, and are conditioned on the paper's one-hot code per
attribute, ``[1 - a1, a1, 1 - a2, a2, ...]`` (width ``2 * n_concepts``); value index 1 means
the attribute is present.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

CONCEPTS: dict[str, tuple[str, str]] = {
    "shape": ("circle", "triangle"),
    "color": ("red", "blue"),
    "size": ("large", "small"),
    "background": ("light", "dark"),
}
"""Known concepts and the names of their values (index 0 = base value)."""

ORDER = ("shape", "color", "size", "background")
"""Canonical concept order, used to index classes (as in the authors' code)."""

SEPARATED = ("color", "size", "background")
"""Concepts whose class means are set by a separation (shape is categorical)."""

MAX_SEPARATION = {"color": 0.8, "size": 0.6, "background": 0.8}
"""Largest separation that keeps every sampled color in [0, 1] and every radius >= 0.1."""

COND_DIM = 11
COND_SLICES = {
    "shape": slice(0, 2),
    "position": slice(2, 4),
    "color": slice(4, 7),
    "size": slice(7, 8),
    "background": slice(8, 11),
}

SIZE_CENTER = 0.45
SIZE_FLOOR = 0.1
FIXED_COLOR = (0.7, 0.3, 0.3)  # red at separation 0.4, used when color is not a concept
NUISANCE_BG = (0.8, 1.0)  # per-channel uniform range of the background when it is not a concept


@dataclass(frozen=True)
class ConceptGrid:
    """An ordered set of binary concepts with their separations.

    :param concepts: concept names, any subset of :data:`CONCEPTS`; stored in canonical order.
    :param separations: separation per separated concept in the grid (e.g. ``{"color": 0.4}``).
    :param held_out: explicit held-out classes as value-name dicts, or ``None`` for the rule
        "more than one concept differs from the base value".
    :param values: for an *attribute grid* (real images), the names of the two values of every
        concept (index 0 = attribute absent); ``None`` for the shapes grid.
    """

    concepts: tuple[str, ...]
    separations: dict[str, float] = field(default_factory=dict)
    held_out: tuple[dict[str, str], ...] | None = None
    values: dict[str, tuple[str, str]] | None = None

    def __post_init__(self) -> None:
        if self.values is not None:
            self._check_attribute_grid()
            return
        unknown = [c for c in self.concepts if c not in CONCEPTS]
        if unknown:
            raise ValueError(f"unknown concept(s) {unknown}; known: {list(CONCEPTS)}")
        ordered = tuple(c for c in ORDER if c in self.concepts)
        object.__setattr__(self, "concepts", ordered)
        missing = [c for c in ordered if c in SEPARATED and c not in self.separations]
        if missing:
            raise ValueError(f"no separation given for concept(s) {missing}")

    def _check_attribute_grid(self) -> None:
        concepts = tuple(self.concepts)
        object.__setattr__(self, "concepts", concepts)
        values = {c: tuple(v) for c, v in self.values.items()}
        object.__setattr__(self, "values", values)
        if len(set(concepts)) != len(concepts) or not concepts:
            raise ValueError(f"attribute grid needs distinct concepts, got {list(concepts)}")
        if set(values) != set(concepts):
            raise ValueError(f"values name {sorted(values)}, the grid has {list(concepts)}")
        names = [n for c in concepts for n in values[c]]
        if any(len(values[c]) != 2 for c in concepts) or len(set(names)) != len(names):
            raise ValueError(f"every concept needs two value names, all distinct: {values}")
        if self.separations:
            raise ValueError("an attribute grid has no separations")

    @property
    def one_hot(self) -> bool:
        """Attribute grid conditioned on one-hot codes (real images) rather than shapes."""
        return self.values is not None

    def value_names(self, concept: str) -> tuple[str, str]:
        """Names of the two values of ``concept`` (index 0 first)."""
        if concept not in self.concepts:
            raise ValueError(f"concept {concept!r} is not in the grid {list(self.concepts)}")
        return self.values[concept] if self.values is not None else CONCEPTS[concept]

    @property
    def cond_dim(self) -> int:
        """Width of the conditioning vector (11 for shapes, 2 per concept for one-hot)."""
        return 2 * len(self.concepts) if self.one_hot else COND_DIM

    def cond_slice(self, concept: str) -> slice:
        """The entries of the conditioning vector that belong to ``concept``."""
        if concept not in self.concepts:
            raise ValueError(f"concept {concept!r} is not in the grid {list(self.concepts)}")
        if self.one_hot:
            i = self.concepts.index(concept)
            return slice(2 * i, 2 * i + 2)
        return COND_SLICES[concept]

    def codes(self, values: np.ndarray) -> np.ndarray:
        """One-hot codes ``[N, 2 n_concepts]`` of value indices ``[N, n_concepts]`` (attribute
        grids): ``[1 - a1, a1, 1 - a2, a2, ...]``."""
        v = np.asarray(values, dtype=np.float32).reshape(-1, len(self.concepts))
        return np.stack([1 - v, v], axis=-1).reshape(len(v), -1).astype(np.float32)

    def class_of(self, spec: dict[str, str]) -> int:
        """Class index of a value-name dict naming every concept, e.g. ``{"color": "red", ...}``."""
        missing = [c for c in self.concepts if c not in spec]
        extra = [c for c in spec if c not in self.concepts]
        if missing or extra:
            raise ValueError(
                f"class {spec} must name exactly the grid's concepts {list(self.concepts)}"
            )
        bits = []
        for c in self.concepts:
            names = self.value_names(c)
            if spec[c] not in names:
                raise ValueError(f"{c} = {spec[c]!r}: not a value of {c!r} {list(names)}")
            bits.append(names.index(spec[c]))
        return self.class_index(tuple(bits))

    # ---- classes ------------------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        return 2 ** len(self.concepts)

    def class_bits(self, index: int) -> tuple[int, ...]:
        """Concept value indices of class ``index`` (row-major over the grid's concepts)."""
        return tuple(int(b) for b in np.unravel_index(index, (2,) * len(self.concepts)))

    def class_index(self, bits: tuple[int, ...]) -> int:
        return int(np.ravel_multi_index(bits, (2,) * len(self.concepts)))

    def class_name(self, index: int) -> str:
        """Readable name, e.g. ``"blue_small"`` (values joined in grid order)."""
        bits = self.class_bits(index)
        return "_".join(self.value_names(c)[b] for c, b in zip(self.concepts, bits, strict=True))

    @property
    def class_names(self) -> list[str]:
        return [self.class_name(i) for i in range(self.n_classes)]

    def is_held_out(self, index: int) -> bool:
        bits = self.class_bits(index)
        if self.held_out is None:
            return sum(bits) > 1
        return any(
            all(
                self.value_names(c)[b] == spec.get(c, self.value_names(c)[0])
                for c, b in zip(self.concepts, bits, strict=True)
            )
            for spec in self.held_out
        )

    @property
    def train_classes(self) -> list[int]:
        return [i for i in range(self.n_classes) if not self.is_held_out(i)]

    @property
    def held_out_classes(self) -> list[int]:
        return [i for i in range(self.n_classes) if self.is_held_out(i)]

    def all_bits(self) -> np.ndarray:
        """Concept value indices of every class, shape ``[n_classes, n_concepts]``."""
        return np.array(list(itertools.product((0, 1), repeat=len(self.concepts))), dtype=np.int64)

    # ---- attribute means and ranges ----------------------------------------------------
    def color_mean(self, value: int) -> np.ndarray:
        """Object RGB mean of color value 0 (red) or 1 (blue), shape ``[3]``."""
        h = self.separations["color"] / 2
        return np.array([0.5 + h, 0.5 - h, 0.5 - h] if value == 0 else [0.5 - h, 0.5 - h, 0.5 + h])

    def size_mean(self, value: int) -> float:
        h = self.separations["size"] / 2
        return SIZE_CENTER + h if value == 0 else SIZE_CENTER - h

    def background_mean(self, value: int) -> np.ndarray:
        h = self.separations["background"] / 2
        return np.full(3, 0.5 + h if value == 0 else 0.5 - h)

    def half_range(self, concept: str) -> float:
        """Half-width of the uniform sampling range of a separated concept."""
        sep = self.separations[concept]
        return 3 * sep / 8 if concept == "size" else sep / 8

    def class_mean_cond(self, index: int) -> np.ndarray:
        """The class-mean conditioning vector (the naive prompt), shape ``[11]``."""
        return self.mean_cond(dict(zip(self.concepts, self.class_bits(index), strict=True)))

    def mean_cond(self, values: dict[str, int]) -> np.ndarray:
        """Conditioning vector with each given concept at its class mean, shape ``[cond_dim]``.

        Concepts of the grid missing from ``values`` are left at zero: this gives the
        single-concept vectors used by linear latent interventions. (Attribute grids: the
        concept's one-hot code.)
        """
        h = np.zeros(self.cond_dim, dtype=np.float32)
        for c, v in values.items():
            if c not in self.concepts:
                raise ValueError(f"concept {c!r} is not in the grid {list(self.concepts)}")
            if self.one_hot:
                h[self.cond_slice(c)] = (1.0 - v, float(v))
            elif c == "shape":
                h[COND_SLICES["shape"]][v] = 1.0
            elif c == "color":
                h[COND_SLICES["color"]] = self.color_mean(v)
            elif c == "size":
                h[COND_SLICES["size"]] = self.size_mean(v)
            elif c == "background":
                h[COND_SLICES["background"]] = self.background_mean(v)
        return h

    def overprompt_cond(self, cls: int, concepts: Sequence[str], dose: float) -> np.ndarray:
        """Class-mean prompt of ``cls`` pushed along each of ``concepts`` by ``dose``
        (docs/method.md §6.1).

        The push is ``h + k * (mean(value) - mean(other value))`` on each concept's entries,
        towards the class's own value. Shapes grids: the dose is the fraction of the way from
        the class mean to the edge of the concept's range, ``k = dose * k_edge`` with ``k_edge``
        the push at which the first entry reaches 0 or 1, so doses in (0, 1] give distinct
        prompts at every separation and none is clipped. Attribute grids (one-hot codes,
        unbounded): ``k = dose``, the paper's overprompting, e.g. ``[1 + k, -k]``.
        """
        if isinstance(concepts, str):
            concepts = [concepts]
        h = self.class_mean_cond(cls)
        for concept in concepts:
            value = self.class_bits(cls)[self.concepts.index(concept)]
            axis = self.mean_cond({concept: value}) - self.mean_cond({concept: 1 - value})
            sl = self.cond_slice(concept)
            k = dose if self.one_hot else dose * self.overprompt_edge(cls, concept)
            h[sl] = h[sl] + k * axis[sl]
            if not self.one_hot:  # dose <= 1 reaches the edge at most: this only absorbs rounding
                h[sl] = np.clip(h[sl], 0.0, 1.0)
        return h.astype(np.float32)

    def push_vectors(self, cls: int, concepts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(v_class, v_opposite)``: vectors with only ``concepts`` set, at the class means of
        ``cls``'s own values and of the opposite ones (whose embedded difference sets the
        linear intervention's direction and length, docs/method.md §6.1)."""
        bits = {c: int(self.class_bits(cls)[self.concepts.index(c)]) for c in concepts}
        return self.mean_cond(bits), self.mean_cond({c: 1 - b for c, b in bits.items()})

    def overprompt_edge(self, cls: int, concept: str) -> float:
        """The push ``k`` (in separations) at which the class mean of ``cls`` first reaches the
        edge [0, 1] of the conditioning range along ``concept`` (shapes grids)."""
        value = self.class_bits(cls)[self.concepts.index(concept)]
        sl = self.cond_slice(concept)
        h = self.class_mean_cond(cls)[sl].astype(np.float64)
        axis = (self.mean_cond({concept: value}) - self.mean_cond({concept: 1 - value}))[sl]
        room = [(1.0 - x) / a if a > 0 else x / -a for x, a in zip(h, axis, strict=True) if a]
        return float(min(room)) if room else 0.0

    def to_dict(self) -> dict:
        d = {
            "concepts": list(self.concepts),
            "separations": dict(self.separations),
            "held_out": None if self.held_out is None else [dict(h) for h in self.held_out],
        }
        if self.values is not None:
            d["values"] = {c: list(v) for c, v in self.values.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ConceptGrid:
        held = d.get("held_out")
        values = d.get("values")
        return cls(
            concepts=tuple(d["concepts"]),
            separations={k: float(v) for k, v in d.get("separations", {}).items()},
            held_out=None if held is None else tuple(dict(h) for h in held),
            values=None if values is None else {c: tuple(v) for c, v in values.items()},
        )


def preset(name: str, **separations: float) -> ConceptGrid:
    """Named grids: ``"2x2"`` (color x size) and ``"2x2x2"`` (+ background)."""
    concepts = {"2x2": ("color", "size"), "2x2x2": ("color", "size", "background")}[name]
    defaults = {"color": 0.4, "size": 0.4, "background": 0.4}
    return ConceptGrid(concepts, {c: separations.get(c, defaults[c]) for c in concepts})
