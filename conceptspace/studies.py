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
import os
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
    (``configs/<name>.yaml``) or the path of an overlay file inside the repository (the study
    is its file name). Refused by name: an empty name, a path outside the repository, and a
    user's overlay whose name is a preset's or that of another overlay's study folder (its
    results would land in that study's folder)."""
    if spec is None or spec in (DEFAULT, BASE):
        return Study(DEFAULT, None, root)
    presets = ", ".join(sorted(p.stem for p in (root / PRESETS).glob("*.yaml")))
    if not str(spec).strip():
        raise ParamsError(
            f"study {spec!r}: the study's name is empty; name a preset "
            f"({presets}) or an overlay file, or leave `study` out for the default study "
            f"({BASE})"
        )
    path = Path(spec)
    if path.suffix not in (".yaml", ".yml"):
        if not STUDY_NAME.match(str(spec)):
            raise ParamsError(
                f"study {spec!r}: not a preset name ({presets}) nor an overlay file "
                "(a .yaml file in the repository)"
            )
        path = Path(PRESETS) / f"{spec}.yaml"
    rel = _inside(spec, path, root)
    if not (root / rel).is_file():
        raise ParamsError(f"study {spec!r}: no such overlay file {rel} (presets: {presets})")
    name = rel.stem
    if not STUDY_NAME.match(name) or name == DEFAULT:
        raise ParamsError(
            f"study {spec!r}: the file name {name!r} is the study's folder name; use lower-case"
            " letters, digits and underscores, not 'default'"
        )
    preset = Path(PRESETS) / f"{name}.yaml"
    if rel != preset and (root / preset).is_file():
        raise ParamsError(
            f"study {spec!r}: {name!r} is the name of the preset {preset}, whose results are "
            f"in results/{name}/; rename your file (e.g. to {rel.with_name(f'my_{rel.name}')})"
        )
    owner = _owner(root / "results" / name / "params.yaml")
    if owner is not None and Path(owner) != rel:
        raise ParamsError(
            f"study {spec!r}: results/{name}/ holds the study of another overlay, {owner}; "
            f"rename your file, or remove results/{name}/ if that study is no longer wanted"
        )
    return Study(name, rel.as_posix(), root)


def from_config(config: dict) -> Study:
    """The study of Snakemake's ``--config``: ``study`` left out is the default study;
    ``--config study=`` (which Snakemake reads as null) is refused as an empty name."""
    if "study" in config and config["study"] is None:
        return resolve("")
    spec = config.get("study")
    return resolve(None if spec is None else str(spec))


def _inside(spec: str, path: Path, root: Path) -> Path:
    """``path`` relative to the repository ``root``, refusing one outside it (a study's
    results and its records are kept beside the code that made them)."""
    full = Path(os.path.normpath(os.path.join(os.path.abspath(root), path)))
    top = Path(os.path.abspath(root))
    real_full, real_top = full.resolve(), top.resolve()
    if not real_full.is_relative_to(real_top) or not full.is_relative_to(top):
        raise ParamsError(
            f"study {spec!r}: {path} is outside the repository {real_top}; copy the overlay "
            "into the repository (e.g. beside params.yaml) and name that file"
        )
    return full.relative_to(top)


def _owner(params_file: Path) -> str | None:
    """The overlay recorded in a study's params.yaml (its ``study.overlay``), if readable."""
    try:
        doc = read_yaml(params_file) if params_file.is_file() else None
    except ParamsError:
        return None
    rec = doc.get("study") if isinstance(doc, dict) else None
    overlay = rec.get("overlay") if isinstance(rec, dict) else None
    return overlay if isinstance(overlay, str) else None


def materialize(study: Study, dry_run: bool = False) -> bool:
    """Write ``results/<study>/params.yaml`` when its content differs from the merge of its
    sources; True when it differs (and, unless ``dry_run``, was written). A pure function of
    the sources and that file: an unchanged file is never touched (its time included)."""
    if study.overlay is None:
        study.document()  # validates
        return False
    path = study.root / study.params_file
    data = study.text().encode()
    if path.is_file() and path.read_bytes() == data:
        return False
    if not dry_run:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, data)
    return True


def load(path: str | Path, root: Path = Path(".")) -> tuple[Params, dict]:
    """Read the params a stage was given, refusing a study document whose sources changed
    since it was written. Returns the typed params and the plain document."""
    doc = read_yaml(root / path)
    study = None
    if isinstance(doc, dict) and "study" in doc:
        rec = doc.pop("study")
        study = resolve(rec.get("overlay"), root) if isinstance(rec, dict) else None
        if study is None or (root / path).read_bytes() != study.text().encode():
            raise ParamsError(
                f"{path} is out of date with its sources "
                f"({BASE} + {rec.get('overlay') if isinstance(rec, dict) else '?'}): refresh it "
                f"with `{study.refresh_command() if study else 'python -m stages.study FILE'}`"
            )
    params = validate(doc, source=str(path))
    check_dvc_pipeline(study or Study(DEFAULT, None, root), doc)
    return params, doc


def check_dvc_pipeline(study: Study, doc: dict) -> None:
    """Under DVC (which names the running stage in ``DVC_STAGE``), refuse to run from a
    ``dvc.yaml`` generated for other runs or seeds than the study's params name. Its per-study
    stages list their upstream jobs' files one by one (so that a fresh clone without DVC's
    cache reads as up to date, docs/reproducibility-dvc.md), so such a file would order them
    before jobs it does not know. Snakemake needs no check: it reads the params themselves."""
    stage = os.environ.get("DVC_STAGE")
    if not stage:
        return
    from conceptspace import pipeline

    dvc_file, _, _ = stage.rpartition(":")
    path = Path(os.environ.get("DVC_ROOT", study.root)) / (dvc_file or "dvc.yaml")
    try:
        on_disk = yaml.safe_load(path.read_text()).get("stages", {})
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return  # not a pipeline file of ours: nothing to compare

    def upstream(stages: dict) -> dict:
        return {
            name: [d for d in (st.get("deps") or []) if str(d).startswith("results/")]
            for name, st in stages.items()
            if isinstance(st, dict) and "matrix" not in st
        }

    expected = pipeline.dvc_pipeline(doc, study.dir, study.params_file)["stages"]
    if upstream(on_disk) != upstream(expected):
        raise ParamsError(
            f"{dvc_file or 'dvc.yaml'} does not list the jobs of {study.params_file} (it was "
            "generated for other runs or seeds, or by older code); regenerate it with "
            f"`python -m stages.study {study.overlay or BASE}` and run dvc repro again"
        )
