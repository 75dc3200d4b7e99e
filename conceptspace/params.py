"""The typed model of ``params.yaml``, the one source of parameters of the pipeline.

``load_params(path)`` parses the YAML (refusing duplicate keys), validates it with this pydantic
model and returns a :class:`Params`. Any problem raises :class:`ParamsError` whose message names
the offending key and value, e.g. ``runs.c090.color = 0.9: ...``. Snakemake (at parse time) and
every stage (before it writes anything) call the same function, so both tools show the same
message.

Each setting is stated once, in its section (:mod:`conceptspace.sections`). The JSON schema
``workflow/schemas/params.schema.yaml`` (for Snakemake's ``validate`` and other tools) is
*generated* from this model by
:func:`write_schema`; ``tests/test_params.py`` checks that the committed file is current. The
schema states types, ranges and keys; the relations between keys (a concept named in one
section must be in ``grid.concepts``, channels a multiple of groups, ...) only the model checks.

Two data sources share every stage: ``synthesize.source: shapes`` (rendered, the default) and
``folder`` (real images in a CelebA-style folder, ``synthesize.folder``; grid.concepts then
name attributes of its table, grid.values optionally name their values). Underspecified
prompts: ``runs.<id>.mask`` (fraction, default 0) of the training images of the class
``synthesize.mask.class`` get the entries of ``synthesize.mask.concept`` nulled.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from conceptspace.data.concepts import CONCEPTS, SEPARATED, ConceptGrid
from conceptspace.sections import (
    RUN_ID,
    Analyze,
    FitClassifier,
    Grid,
    Intervene,
    ParamsError,
    Probe,
    Run,
    Section,
    Synthesize,
    Train,
    checkpoint_steps,
    default_value_names,
    describe,
    key_of,
    keyed,
)

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "params.schema.yaml"


class Params(Section):
    runs: dict[Annotated[str, Field(pattern=RUN_ID)], Run] = Field(min_length=1)
    seeds: list[StrictInt] = Field(min_length=1)
    grid: Grid
    synthesize: Synthesize
    fit_classifier: FitClassifier
    train: Train
    probe: Probe
    intervene: Intervene
    analyze: Analyze

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("seeds must be unique")
        if any(s < 0 for s in v):
            raise ValueError("seeds must be >= 0")
        return v

    @model_validator(mode="after")
    def _grid_names(self) -> Params:
        """Concept and value names of the grid, per data source; the held-out classes."""
        concepts = self.grid.concepts
        if self.synthesize.source == "shapes":
            for c in concepts:
                if c not in CONCEPTS:
                    raise keyed(
                        f"grid.concepts = {concepts}: unknown concept {c!r}; known: "
                        f"{list(CONCEPTS)} (or set synthesize.source: folder for attributes)"
                    )
            if self.grid.values is not None:
                raise keyed(
                    "grid.values: value names are for folder data only "
                    "(synthesize.source = 'shapes' uses the built-in names)"
                )
            for key in ("folder",):
                if getattr(self.synthesize, key) is not None:
                    raise keyed(f"synthesize.{key}: only used with synthesize.source = 'folder'")
            if self.fit_classifier.separations is None:
                raise keyed("fit_classifier.separations: required for synthesize.source = 'shapes'")
        else:
            if self.synthesize.folder is None:
                raise keyed(
                    "synthesize.folder: required with synthesize.source = 'folder' "
                    "(root of a CelebA-style folder)"
                )
            if self.fit_classifier.separations is not None:
                raise keyed(
                    "fit_classifier.separations: folder data have no separations; leave it out "
                    "(the probe is fitted on the folder's images)"
                )
            for c in self.grid.values or {}:
                if c not in concepts:
                    raise keyed(f"grid.values.{c}: {c!r} is not in grid.concepts {concepts}")
            names = [n for c in concepts for n in self.value_names(c)]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise keyed(
                    f"grid.values: value names must be distinct across concepts, "
                    f"{dup} repeats (give them in grid.values)"
                )
        for i, spec in enumerate(self.grid.held_out or []):
            if not spec:
                raise keyed(f"grid.held_out[{i}] = {{}}: a held-out class names no concept")
            for concept, value in spec.items():
                if concept not in concepts:
                    raise keyed(
                        f"grid.held_out[{i}].{concept} = {value!r}: concept {concept!r} is not "
                        f"in grid.concepts {concepts}"
                    )
                names = self.value_names(concept)
                if value not in names:
                    raise keyed(
                        f"grid.held_out[{i}].{concept} = {value!r}: not a value of "
                        f"{concept!r} {list(names)}"
                    )
        return self

    def value_names(self, concept: str) -> tuple[str, str]:
        """The two value names of a grid concept (index 0 = base / attribute absent)."""
        if self.synthesize.source == "shapes":
            return CONCEPTS[concept]
        given = (self.grid.values or {}).get(concept)
        return tuple(given) if given is not None else default_value_names(concept)

    @model_validator(mode="after")
    def _runs_cover_grid(self) -> Params:
        needed = [c for c in self.grid.concepts if c in SEPARATED]
        if self.synthesize.source == "folder":
            needed = []
        for run_id, seps in self.runs.items():
            given = seps.as_dict()
            if given and self.synthesize.source == "folder":
                c = next(iter(given))
                raise keyed(
                    f"runs.{run_id}.{c} = {given[c]}: folder data have no separations "
                    "(a run gives at most its mask)"
                )
            for c in needed:
                if c not in given:
                    raise keyed(f"runs.{run_id}: no separation for concept {c!r} of grid.concepts")
            for c in given:
                if c not in self.grid.concepts:
                    raise keyed(
                        f"runs.{run_id}.{c} = {given[c]}: concept {c!r} is not in grid.concepts"
                    )
        return self

    @model_validator(mode="after")
    def _both_sides(self) -> Params:
        """A grid needs a training class to learn from and a held-out class to ask for."""
        grid = self.grid_for(self.run_ids[0])
        for side, ks in (("training", grid.train_classes), ("held-out", grid.held_out_classes)):
            if not ks:
                raise keyed(
                    f"grid.held_out = {self.grid.held_out}: no {side} class among the "
                    f"{grid.n_classes} classes of grid.concepts {self.grid.concepts}"
                )
        return self

    @model_validator(mode="after")
    def _mask(self) -> Params:
        """runs.<id>.mask > 0 needs synthesize.mask, naming a training class and a concept."""
        m = self.synthesize.mask
        if m is None:
            for run_id, run in self.runs.items():
                if run.mask > 0:
                    raise keyed(
                        f"runs.{run_id}.mask = {run.mask}: masking needs synthesize.mask "
                        "(the class and the concept to mask)"
                    )
            return self
        concepts = self.grid.concepts
        if m.concept not in concepts:
            raise keyed(f"synthesize.mask.concept = {m.concept!r}: not in grid.concepts {concepts}")
        grid = self.grid_for(self.run_ids[0])
        try:
            k = grid.class_of(m.class_)
        except ValueError as e:
            raise keyed(f"synthesize.mask.class = {m.class_}: {e}") from None
        if grid.is_held_out(k):
            raise keyed(
                f"synthesize.mask.class = {m.class_}: {grid.class_name(k)!r} is a held-out "
                f"class; mask a training class {[grid.class_name(i) for i in grid.train_classes]}"
            )
        return self

    def mask_for(self, run_id: str) -> float:
        """The masked fraction of one sweep point (0 when unset)."""
        self.grid_for(run_id)
        return float(self.runs[run_id].mask)

    # ---- convenience ----------------------------------------------------------------------
    @property
    def run_ids(self) -> list[str]:
        return list(self.runs)

    def grid_for(self, run_id: str) -> ConceptGrid:
        """The concept grid of one sweep point."""
        if run_id not in self.runs:
            raise ParamsError(f"unknown run id {run_id!r}; params.yaml defines {self.run_ids}")
        folder = self.synthesize.source == "folder"
        return ConceptGrid(
            concepts=tuple(self.grid.concepts),
            separations=self.runs[run_id].as_dict(),
            held_out=None if self.grid.held_out is None else tuple(self.grid.held_out),
            values={c: self.value_names(c) for c in self.grid.concepts} if folder else None,
        )

    @model_validator(mode="after")
    def _consistent_stages(self) -> Params:
        for i, seps in enumerate(self.fit_classifier.separations or []):
            for c in [c for c in self.grid.concepts if c in SEPARATED]:
                if c not in seps.as_dict():
                    raise keyed(f"fit_classifier.separations[{i}]: no separation for concept {c!r}")
            for c, v in seps.as_dict().items():
                if c not in self.grid.concepts:
                    raise keyed(
                        f"fit_classifier.separations[{i}].{c} = {v}: concept {c!r} is not "
                        "in grid.concepts"
                    )
        for name in ("overprompt", "linear"):
            push = getattr(self.intervene, name)
            unknown = [c for c in push.concepts if c not in self.grid.concepts]
            if unknown:
                raise keyed(
                    f"intervene.{name}.concepts = {push.concepts}: {unknown} not in "
                    f"grid.concepts {self.grid.concepts}"
                )
        self._check_doses()
        if "guidance" in self.intervene.methods and self.train.p_uncond == 0:
            raise keyed(
                "intervene.methods = [..., 'guidance']: classifier-free guidance needs a "
                "model trained with train.p_uncond > 0"
            )
        return self

    def _check_doses(self) -> None:
        """Refuse, before any work, doses that would give one prompt twice: an overprompt dose
        past the edge of the range, or a run whose class mean already sits on the edge, where
        every dose is the naive prompt (docs/method.md §6). Linear doses are distinct hooks
        once distinct and non-zero (checked by the section)."""
        if "overprompt" not in self.intervene.methods:
            return
        push = self.intervene.overprompt
        for run in self.run_ids:
            grid = self.grid_for(run)
            if grid.one_hot:
                continue
            over = [d for d in push.doses if d > 1]
            if over:
                raise keyed(
                    f"intervene.overprompt.doses = {push.doses}: {over} past 1, the edge of the "
                    "concepts' ranges (a dose is the fraction of the way from the class "
                    "mean to the edge; beyond it every prompt is clipped to the same one)"
                )
            for k in grid.held_out_classes:
                for concept in push.concepts:
                    if grid.overprompt_edge(k, concept) <= 0:
                        raise keyed(
                            f"intervene.overprompt: in run {run!r} the class mean of "
                            f"{grid.class_name(k)} is already at the edge of the {concept} "
                            f"range, so no dose moves it; leave {concept} out of "
                            "intervene.overprompt.concepts or narrow that run's separation"
                        )

    def checkpoint_steps(self) -> list[int]:
        """The checkpoint schedule, known before training starts."""
        c = self.train.checkpoints
        return checkpoint_steps(c.first, self.train.steps, c.count)

    @model_validator(mode="after")
    def _image_size_fits_net(self) -> Params:
        problem = self.train.net.image_size_problem(self.synthesize.image_size)
        if problem:
            raise keyed(f"synthesize.image_size = {self.synthesize.image_size}: {problem}")
        return self

    def check_seed(self, seed: int) -> None:
        if seed not in self.seeds:
            raise ParamsError(f"unknown seed {seed}; params.yaml defines seeds {self.seeds}")

    def check_probe_range(self) -> None:
        """Every separation of the sweep must lie within the probe's training range
        (``fit_classifier.separations``), where its readings hold (docs/method.md §4.1)."""
        seps = [s.as_dict() for s in self.fit_classifier.separations or []]
        if not seps:
            return
        for run_id, run_seps in self.runs.items():
            for concept, value in run_seps.as_dict().items():
                lo, hi = min(s[concept] for s in seps), max(s[concept] for s in seps)
                if not lo <= value <= hi:
                    raise ParamsError(
                        f"runs.{run_id}.{concept} = {value}: outside the probe's training range "
                        f"[{lo}, {hi}] (fit_classifier.separations); widen that list"
                    )

    def check_training_group(self, ids: list[tuple[str, int]]) -> None:
        """Refuse (run, seed) pairs that cannot be trained as one job: an unknown run or seed,
        a run named twice, more runs than ``train.ensemble`` (conceptspace/model/ensemble.py)."""
        for run, seed in ids:
            self.grid_for(run)
            self.check_seed(seed)
        if len(set(ids)) != len(ids):
            raise ParamsError(f"the group names a run twice: {ids}")
        if len(ids) > self.train.ensemble:
            raise ParamsError(
                f"train.ensemble = {self.train.ensemble}: a group of {len(ids)} runs was given; "
                "raise train.ensemble or train the runs in smaller groups"
            )


# ---- loading --------------------------------------------------------------------------------
class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node, deep=False):  # noqa: D102
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ParamsError(
                    f"duplicate key {key!r} (line {key_node.start_mark.line + 1}): "
                    "each key, e.g. a run id, may appear only once"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing, binary or non-UTF-8 file or bad YAML raises
    :class:`ParamsError` naming the file (and the line of an undecodable byte)."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: file not found")
    if path.is_dir():
        raise ParamsError(f"{path}: a folder, not a YAML file; name the file itself")
    stream = io.StringIO(_yaml_text(path))
    stream.name = str(path)  # YAML's error marks name the file
    try:
        return yaml.load(stream, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None


def _yaml_text(path: Path) -> str:
    """The text of a YAML file: UTF-8 (YAML's own encoding), refusing a binary file (NUL
    bytes) or an undecodable byte by name rather than with a decoder's traceback."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ParamsError(f"{path}: cannot be read ({e.strerror})") from None
    if b"\x00" in data:
        raise ParamsError(
            f"{path}: a binary file, not YAML text; give a YAML file of params (a mapping of keys)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ParamsError(
            f"{path}: byte 0x{data[e.start]:02x} at line {line}, column {column} is not UTF-8; "
            "save the file as UTF-8 text (YAML files are UTF-8)"
        ) from None


SCHEMA_HEADER = """\
# GENERATED from the pydantic models conceptspace/params.py and conceptspace/sections.py; do not
# edit by hand. Regenerate with
#   python -c "from conceptspace.params import write_schema; write_schema()"
# (tests/test_params.py fails while this file is stale). Snakemake validates its config with it.
"""


# pydantic leaves the bounds of an optional number (``Annotated[Real, Field(gt=0)] | None``) under
# their Python names; JSON Schema calls them so:
_BOUNDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum", "le": "maximum"}


def _tidy(node: Any) -> Any:
    """The schema without pydantic's generated ``title`` of every field (noise to a reader) and
    without defaults (the model fills them in; Snakemake's ``validate`` would write them into
    its config, into null sections too), with every bound under its JSON Schema name."""
    if isinstance(node, dict):
        return {
            _BOUNDS.get(k, k): _tidy(v) for k, v in node.items() if k not in ("title", "default")
        }
    if isinstance(node, list):
        return [_tidy(v) for v in node]
    return node


def json_schema() -> dict:
    """The JSON schema (draft 2020-12) of params.yaml, generated from :class:`Params`."""
    schema = _tidy(Params.model_json_schema(by_alias=True, mode="validation"))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "conceptspace params.yaml",
        **schema,
    }


def schema_text() -> str:
    """The text of the committed schema file: header comment plus YAML."""
    return SCHEMA_HEADER + yaml.safe_dump(json_schema(), sort_keys=False, width=100)


def write_schema(path: str | Path = SCHEMA_PATH) -> None:
    """(Re)write ``workflow/schemas/params.schema.yaml`` from the model."""
    Path(path).write_text(schema_text())


def schema_errors(doc: Any) -> list[str]:
    """Messages of the JSON schema's objections to ``doc`` (empty when it is valid)."""
    import jsonschema

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        out.append(f"{key_of(err.absolute_path)} = {err.instance!r}: {err.message}")
    return out


def validate(doc: Any, source: str = "params.yaml") -> Params:
    """Validate a parsed document with the schema and the model; raise :class:`ParamsError`."""
    try:
        params = Params.model_validate(doc)
    except ValidationError as e:
        lines = describe(e, doc)
        raise ParamsError(f"{source}: invalid parameters:\n  " + "\n  ".join(lines)) from None
    errors = schema_errors(doc)
    if errors:  # the model accepted what the schema rejects: a bug in one of them
        raise ParamsError(f"{source}: invalid parameters (schema):\n  " + "\n  ".join(errors))
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; raises :class:`ParamsError` naming key and value."""
    return validate(read_yaml(path), source=str(path))


__all__ = [
    "Params",
    "ParamsError",
    "json_schema",
    "load_params",
    "schema_errors",
    "validate",
    "write_schema",
]
