"""Studies and the pipeline's single description: overlays merge as documented, a stale merged
document is refused by name, every committed dvc.yaml is what conceptspace.pipeline generates,
and each stage's declared code dependencies hold every project module it imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from conceptspace import pipeline, studies
from conceptspace.params import ParamsError
from stages.study import dvc_text
from tests.conftest import ROOT, copy_project


def test_merge_replaces_runs_and_lists_and_merges_sections():
    base = {"runs": {"a": {"color": 0.1}}, "train": {"steps": 5, "lr": 0.1}, "seeds": [0]}
    over = {"runs": {"b": {"color": 0.2}}, "train": {"steps": 9}, "seeds": [1, 2]}
    merged = studies.merge(base, over)
    assert merged == {
        "runs": {"b": {"color": 0.2}},
        "train": {"steps": 9, "lr": 0.1},
        "seeds": [1, 2],
    }
    assert studies.overlay_of(base, merged) == over
    assert studies.merge(base, {"train": None}) == {"runs": base["runs"], "seeds": [0]}


def test_presets_state_only_what_they_change():
    guidance = yaml.safe_load((ROOT / "configs" / "guidance.yaml").read_text())
    # its own change (the null token, the guidance method) and the first default's sweep and
    # schedule it was designed on; nothing of the data, classifier, evaluation or analysis
    assert set(guidance) == {"runs", "seeds", "train", "intervene"}
    assert guidance["train"]["p_uncond"] == 0.1 and "guidance" in guidance["intervene"]["methods"]
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert all(guidance["train"][k] != base["train"][k] for k in guidance["train"])


@pytest.mark.parametrize("spec", ["nope", "configs/nope.yaml"])
def test_unknown_study_is_refused_by_name(spec):
    with pytest.raises(ParamsError, match="nope"):
        studies.resolve(spec, ROOT)


def test_default_study_and_preset_paths():
    d, g = studies.resolve(None, ROOT), studies.resolve("guidance", ROOT)
    assert (d.dir, d.params_file, d.dvc_file) == ("results/default", "params.yaml", "dvc.yaml")
    assert (g.dir, g.params_file) == ("results/guidance", "results/guidance/params.yaml")


def test_stale_study_document_is_refused(tmp_path):
    root = copy_project(tmp_path)
    (root / "configs" / "mine.yaml").write_text("train: {steps: 4000}\n")
    study = studies.resolve("configs/mine.yaml", root)
    assert studies.materialize(study)
    params, doc = studies.load(study.params_file, root)
    assert params.train.steps == 4000 and "study" not in doc
    (root / "configs" / "mine.yaml").write_text("train: {steps: 5000}\n")
    with pytest.raises(ParamsError, match="out of date.*python -m stages.study configs/mine"):
        studies.load(study.params_file, root)


@pytest.mark.parametrize("spec", [None] + sorted(p.stem for p in (ROOT / "configs").glob("*.yaml")))
def test_committed_study_files_are_current(spec):
    study = studies.resolve(spec, ROOT)
    assert (ROOT / study.dvc_file).read_text() == dvc_text(study), "run python -m stages.study"
    if study.overlay is not None:
        assert (ROOT / study.params_file).read_text() == study.text()


@pytest.mark.parametrize("stage", sorted(pipeline.STAGES))
def test_declared_code_holds_every_imported_project_module(stage):
    """Import the stage in a fresh interpreter and list the project files it loaded: each must
    be in its import closure, and so in its dvc.yaml deps (the closure is static, so it also
    holds modules imported inside functions)."""
    code = (
        f"import json, sys, stages.{stage}\n"
        "print(json.dumps(sorted(m.__file__ for m in list(sys.modules.values())\n"
        "    if getattr(m, '__file__', None))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    loaded = {
        str(__import__("pathlib").Path(f).resolve().relative_to(ROOT))
        for f in json.loads(out.stdout)
        if f.startswith(str(ROOT)) and "/.venv/" not in f
    }
    closure = set(pipeline.code_closure(stage))
    assert loaded and loaded <= closure, sorted(loaded - closure)
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    assert closure <= set(deps)


@pytest.mark.parametrize("stage", ["synthesize", "fit_classifier"])
def test_the_data_stages_do_not_depend_on_the_diffusion_model(stage):
    """An edit to the diffusion model (conceptspace/model/) reruns the trainings and what
    follows them, never the datasets or the classifier that measures every study."""
    model = [f for f in pipeline.code_closure(stage) if f.startswith("conceptspace/model/")]
    assert model == [], f"{stage} depends on {model}"


def test_closure_follows_a_new_import(tmp_path):
    root = copy_project(tmp_path)
    target = root / "conceptspace" / "measure" / "probing.py"
    assert "conceptspace/analysis/headline.py" not in pipeline.code_closure("probe", root)
    target.write_text(
        target.read_text() + "\n\ndef _f():\n    from conceptspace.analysis import headline\n"
    )
    assert "conceptspace/analysis/headline.py" in pipeline.code_closure.__wrapped__("probe", root)
