"""Studies: one params document each, with its artifacts under ``results/<study>/``.

The *default* study is ``params.yaml`` itself. Any other study is an **overlay**: a YAML file
that states only the keys it changes over ``params.yaml`` (the presets in ``configs/``, or a
user's own file). :func:`merge` lays it over the default (mappings merge key by key; lists,
numbers and ``runs`` are replaced whole, since a study's sweep is its own), the result is
validated like ``params.yaml``, and it is written to ``results/<study>/params.yaml``, the
document the stages read and the record beside the study's results.

That file names its sources (key ``study``). A stage refuses it when the sources have changed
since it was written, naming the command that refreshes it, so a result is never made from a
stale merge.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from conceptspace.io import write_bytes
from conceptspace.params import Params, ParamsError, read_yaml, validate

DEFAULT = "default"
BASE = "params.yaml"
PRESETS = "configs"
STUDY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
REPLACED_WHOLE = ("runs",)  # a study's sweep replaces the default's, it is not added to it


def merge(base: dict, overlay: dict, _top: bool = True) -> dict:
    """``overlay`` laid over ``base``: mappings merge recursively, anything else replaces, and
    a key set to null that has a mapping or list in ``base`` is left out (``fit_classifier:
    {separations: null}`` for folder data)."""
    out = copy.deepcopy(base)
    for k, v in overlay.items():
        if v is None and isinstance(out.get(k), dict | list):
            out.pop(k)
            continue
        whole = _top and k in REPLACED_WHOLE
        if isinstance(v, dict) and isinstance(out.get(k), dict) and not whole:
            out[k] = merge(out[k], v, _top=False)
        else:
            out[k] = copy.deepcopy(v)
    return out


def overlay_of(base: dict, doc: dict, _top: bool = True) -> dict:
    """The smallest overlay that turns ``base`` into ``doc`` (inverse of :func:`merge`)."""
    out = {}
    for k, v in doc.items():
        b = base.get(k)
        if isinstance(v, dict) and isinstance(b, dict) and not (_top and k in REPLACED_WHOLE):
            sub = overlay_of(b, v, _top=False)
            if sub:
                out[k] = sub
        elif k not in base or b != v:
            out[k] = v
    out.update({k: None for k in base if k not in doc})  # a key the study leaves out
    return out


@dataclass(frozen=True)
class Study:
    """A study: its name, its overlay (None for the default study) and the project root."""

    name: str
    overlay: str | None = None
    root: Path = Path(".")

    @property
    def dir(self) -> str:
        return f"results/{self.name}"

    @property
    def params_file(self) -> str:
        """The document its stages read (relative to the project root)."""
        return BASE if self.overlay is None else f"{self.dir}/params.yaml"

    @property
    def dvc_file(self) -> str:
        return "dvc.yaml" if self.overlay is None else f"{self.dir}/dvc.yaml"

    def document(self) -> dict:
        """The merged document (validated), without the ``study`` record."""
        base = read_yaml(self.root / BASE)
        if self.overlay is None:
            doc = base
        else:
            over = read_yaml(self.root / self.overlay)
            if not isinstance(over, dict):
                raise ParamsError(f"{self.overlay}: a study overlay must be a mapping of keys")
            if "study" in over:
                raise ParamsError(f"{self.overlay}: 'study' is not a params key")
            doc = merge(base, over)
        validate(doc, source=self.overlay or BASE)
        return doc

    def text(self) -> str:
        """``results/<study>/params.yaml``: its sources, then the merged document."""
        header = (
            f"# Study {self.name!r}: {BASE} with {self.overlay} laid over it (written by\n"
            f"# `python -m stages.study {self.overlay}`, and by Snakemake at each run; do not\n"
            "# edit: edit the overlay). The stages of this study read this file.\n"
        )
        record = {"study": {"name": self.name, "base": BASE, "overlay": self.overlay}}
        body = yaml.safe_dump(record, sort_keys=False) + yaml.safe_dump(
            self.document(), sort_keys=False
        )
        return header + body

    def refresh_command(self) -> str:
        return f"python -m stages.study {self.overlay}"


def resolve(spec: str | None, root: Path = Path(".")) -> Study:
    """A study from what the user names: nothing or ``default`` (params.yaml), a preset name
    (``configs/<name>.yaml``) or the path of an overlay file (the study is its file name)."""
    if spec in (None, "", DEFAULT, BASE):
        return Study(DEFAULT, None, root)
    path = Path(spec)
    if path.suffix not in (".yaml", ".yml"):
        path = Path(PRESETS) / f"{spec}.yaml"
    if not (root / path).is_file():
        presets = sorted(p.stem for p in (root / PRESETS).glob("*.yaml"))
        raise ParamsError(
            f"study {spec!r}: no such overlay file {path} (presets: {', '.join(presets)})"
        )
    name = path.stem
    if not STUDY_NAME.match(name) or name == DEFAULT:
        raise ParamsError(
            f"study {spec!r}: the file name {name!r} is the study's folder name; use lower-case"
            " letters, digits and underscores, not 'default'"
        )
    return Study(name, str(path), root)


def materialize(study: Study) -> bool:
    """Write ``results/<study>/params.yaml`` when its content changes; True when written."""
    if study.overlay is None:
        study.document()  # validates
        return False
    path = study.root / study.params_file
    text = study.text()
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, text.encode())
    return True


def load(path: str | Path, root: Path = Path(".")) -> tuple[Params, dict]:
    """Read the params a stage was given, refusing a study document whose sources changed
    since it was written. Returns the typed params and the plain document."""
    doc = read_yaml(root / path)
    if isinstance(doc, dict) and "study" in doc:
        rec = doc.pop("study")
        study = resolve(rec.get("overlay"), root) if isinstance(rec, dict) else None
        if study is None or (root / path).read_text() != study.text():
            raise ParamsError(
                f"{path} is out of date with its sources "
                f"({BASE} + {rec.get('overlay') if isinstance(rec, dict) else '?'}): refresh it "
                f"with `{study.refresh_command() if study else 'python -m stages.study FILE'}`"
            )
    return validate(doc, source=str(path)), doc
