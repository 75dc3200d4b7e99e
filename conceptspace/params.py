"""The typed model of ``params.yaml``, the one source of parameters of the pipeline.

``load_params(path)`` parses the YAML (refusing duplicate keys), validates it against the JSON
schema ``workflow/schemas/params.schema.yaml`` *and* this pydantic model, and returns a
:class:`Params`. Any problem raises :class:`ParamsError` whose message names the offending key
and value, e.g. ``runs.c090.color = 0.9: ...``. Snakemake (at parse time) and every stage (before
it writes anything) call the same function, so both tools show the same message.

The schema and the model state the same rules twice on purpose: the schema serves Snakemake's
``validate`` and other tools, the model gives typed access. ``tests/test_params.py`` checks
that they accept and reject the same documents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .concepts import CONCEPTS, MAX_SEPARATION, SEPARATED, ConceptGrid

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "params.schema.yaml"
RUN_ID = r"^[a-z][a-z0-9_]*$"


class ParamsError(ValueError):
    """Invalid parameters; the message names the key and the value."""


def _keyed(message: str) -> PydanticCustomError:
    """An error whose message already names its key (relative to the validated model)."""
    return PydanticCustomError("keyed", "{message}", {"message": message})


def _real(v: Any) -> Any:
    # Accept ints and floats, but not bools or strings (YAML 1.1 vs 1.2 disagree on those).
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError("must be a number")
    return float(v)


Real = Annotated[float, BeforeValidator(_real)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- the sweep ------------------------------------------------------------------------------
class Separations(_Section):
    """Separation of the class means per concept (the concept-signal knob)."""

    color: Real | None = Field(None, gt=0, le=MAX_SEPARATION["color"])
    size: Real | None = Field(None, gt=0, le=MAX_SEPARATION["size"])
    background: Real | None = Field(None, gt=0, le=MAX_SEPARATION["background"])

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Grid(_Section):
    concepts: list[Literal["shape", "color", "size", "background"]] = Field(min_length=1)
    held_out: list[dict[Literal["shape", "color", "size", "background"], str]] | None = None

    @field_validator("concepts")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("concepts must be unique")
        return v

    @model_validator(mode="after")
    def _held_out_in_grid(self) -> Grid:
        for i, spec in enumerate(self.held_out or []):
            if not spec:
                raise _keyed(f"held_out[{i}] = {{}}: a held-out class names no concept")
            for concept, value in spec.items():
                if concept not in self.concepts:
                    raise _keyed(
                        f"held_out[{i}].{concept} = {value!r}: concept {concept!r} is not in "
                        f"grid.concepts {self.concepts}"
                    )
                if value not in CONCEPTS[concept]:
                    raise _keyed(
                        f"held_out[{i}].{concept} = {value!r}: not a value of {concept!r} "
                        f"{list(CONCEPTS[concept])}"
                    )
        return self


# ---- one section per stage ----------------------------------------------------------------
class Synthesize(_Section):
    image_size: StrictInt = Field(ge=8, le=128)
    n_per_class: StrictInt = Field(ge=1)  # training images per training class
    val_fraction: Real = Field(ge=0, lt=1)
    n_heldout: StrictInt = Field(ge=1)  # class-mean images per held-out class (held-out loss)
    blur_px: Real = Field(ge=0, le=4)
    noise: Real = Field(ge=0, le=0.1)
    signal_samples: StrictInt = Field(ge=1)  # image pairs for the measured concept signal


class Params(_Section):
    runs: dict[Annotated[str, Field(pattern=RUN_ID)], Separations] = Field(min_length=1)
    seeds: list[StrictInt] = Field(min_length=1)
    grid: Grid
    synthesize: Synthesize

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("seeds must be unique")
        if any(s < 0 for s in v):
            raise ValueError("seeds must be >= 0")
        return v

    @model_validator(mode="after")
    def _runs_cover_grid(self) -> Params:
        needed = [c for c in self.grid.concepts if c in SEPARATED]
        for run_id, seps in self.runs.items():
            given = seps.as_dict()
            for c in needed:
                if c not in given:
                    raise _keyed(f"runs.{run_id}: no separation for concept {c!r} of grid.concepts")
            for c in given:
                if c not in self.grid.concepts:
                    raise _keyed(
                        f"runs.{run_id}.{c} = {given[c]}: concept {c!r} is not in grid.concepts"
                    )
        return self

    # ---- convenience ----------------------------------------------------------------------
    @property
    def run_ids(self) -> list[str]:
        return list(self.runs)

    def grid_for(self, run_id: str) -> ConceptGrid:
        """The concept grid of one sweep point."""
        if run_id not in self.runs:
            raise ParamsError(f"unknown run id {run_id!r}; params.yaml defines {self.run_ids}")
        return ConceptGrid(
            concepts=tuple(self.grid.concepts),
            separations=self.runs[run_id].as_dict(),
            held_out=None if self.grid.held_out is None else tuple(self.grid.held_out),
        )

    def check_seed(self, seed: int) -> None:
        if seed not in self.seeds:
            raise ParamsError(f"unknown seed {seed}; params.yaml defines seeds {self.seeds}")


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
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: file not found")
    try:
        with open(path) as f:
            return yaml.load(f, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None


def _loc(parts) -> str:
    return ".".join(str(p) for p in parts if p not in ("[key]",)) or "<root>"


def _lookup(doc: Any, loc) -> Any:
    for p in loc:
        try:
            doc = doc[p]
        except (KeyError, IndexError, TypeError):
            return None
    return doc


def schema_errors(doc: Any) -> list[str]:
    """Messages of the JSON schema's objections to ``doc`` (empty when it is valid)."""
    import jsonschema

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        out.append(f"{_loc(err.absolute_path)} = {err.instance!r}: {err.message}")
    return out


def validate(doc: Any, source: str = "params.yaml") -> Params:
    """Validate a parsed document with the schema and the model; raise :class:`ParamsError`."""
    try:
        params = Params.model_validate(doc)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
            value = err.get("input", _lookup(doc, loc))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "keyed":  # our own validators name key and value themselves
                prefix = _loc(loc)
                lines.append(msg if prefix == "<root>" else f"{prefix}.{msg}")
            else:
                lines.append(f"{_loc(loc)} = {value!r}: {msg}")
        raise ParamsError(f"{source}: invalid parameters:\n  " + "\n  ".join(lines)) from None
    errors = schema_errors(doc)
    if errors:  # the model accepted what the schema rejects: a bug in one of them
        raise ParamsError(f"{source}: invalid parameters (schema):\n  " + "\n  ".join(errors))
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; raises :class:`ParamsError` naming key and value."""
    return validate(read_yaml(path), source=str(path))


__all__ = ["Params", "ParamsError", "load_params", "validate", "schema_errors", "StrictBool"]
