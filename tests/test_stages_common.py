"""stages/common.py: the provenance records a job's command line asks for are read before the
job runs, from the command line itself, and written once it is done; nothing is kept between
calls."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from conceptspace import pipeline, staleness
from conceptspace.params import ParamsError
from stages import common


def _params(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_the_records_a_command_line_asks_for(tmp_path, grouped_doc):
    p = str(_params(tmp_path, grouped_doc))
    lone = ["--params", p, "--run", "c020", "--seed", "0", "--dataset", "d.npz"]
    asked, doc = common.asked_records([*lone, "--provenance", "a.json"])
    assert asked == [("c020", 0, "a.json")] and doc == grouped_doc
    # given twice to a stage that takes one run: the last one counts, as in its own parser
    asked, _ = common.asked_records([*lone, "--provenance", "x.json", "--provenance", "a.json"])
    assert asked == [("c020", 0, "a.json")]
    group = ["--params", p]
    for run, path in (("c020", "a.json"), ("c050", "b.json")):
        group += ["--run", run, "--seed", "0", "--ckpt-dir", run, "--provenance", path]
    assert common.asked_records(group, group=True)[0] == [
        ("c020", 0, "a.json"),
        ("c050", 0, "b.json"),
    ]
    study = ["--params", p, "--out", "o", "--provenance", "s.json"]
    assert common.asked_records(study)[0] == [(None, None, "s.json")]
    # none asked for, or a command line the stage refuses itself: nothing read
    assert common.asked_records(lone) == ([], None)
    assert common.asked_records([*group, "--run", "c080"], group=True) == ([], None)
    assert common.asked_records([*lone[:-3], "--seed", "x", "--provenance", "a"]) == ([], None)


def test_unreadable_params_are_left_to_the_stage(tmp_path):
    missing = str(tmp_path / "missing.yaml")
    asked, doc = common.asked_records(["--params", missing, "--provenance", "s.json"])
    assert asked == [(None, None, "s.json")] and isinstance(doc, ParamsError)


def _stage_run(out: Path, params: Path, then=None):
    """A per-study job (named ``analyze``) that loads its params and writes one file."""

    def run(argv=None) -> None:
        args = common.parser("a job", identity=False).parse_args(argv)
        common.load(args)
        (out / "result.txt").write_text("done")
        if then is not None:
            then()

    run.__module__ = "stages.analyze"
    return run


def test_entry_writes_the_records_of_the_params_read_before_the_run(tmp_path, tiny_doc):
    params, out = _params(tmp_path, tiny_doc), tmp_path / "out"
    out.mkdir()
    changed = copy.deepcopy(tiny_doc)
    changed["analyze"]["sigma"] = 3.0

    def edit():  # the params file changes while the job runs
        params.write_text(yaml.safe_dump(changed, sort_keys=False))

    main = common.entry(_stage_run(out, params, then=edit))
    record_path = out / pipeline.RECORD
    assert main(["--params", str(params), "--provenance", str(record_path)]) == 0
    record = json.loads(record_path.read_text())
    assert "result.txt" in record.pop(staleness.FILES)
    assert record == pipeline.job_record(tiny_doc, "analyze")
    # a second job in the same process writes its own record, of its own params
    record_path.unlink()
    main = common.entry(_stage_run(out, params))
    assert main(["--params", str(params), "--provenance", str(record_path)]) == 0
    record = json.loads(record_path.read_text())
    record.pop(staleness.FILES)
    assert record == pipeline.job_record(changed, "analyze")
    # no record asked for: none written
    record_path.unlink()
    assert main(["--params", str(params)]) == 0
    assert not record_path.exists()


@pytest.mark.parametrize("bad", ["missing", "invalid"])
def test_a_job_with_bad_params_exits_2_and_writes_no_record(tmp_path, tiny_doc, capsys, bad):
    params, out = tmp_path / "params.yaml", tmp_path / "out"
    out.mkdir()
    if bad == "invalid":
        doc = copy.deepcopy(tiny_doc)
        doc["train"]["lr"] = 2.0
        _params(tmp_path, doc)
    main = common.entry(_stage_run(out, params))
    assert main(["--params", str(params), "--provenance", str(out / pipeline.RECORD)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert ("not found" if bad == "missing" else "train.lr = 2.0") in err
    assert not (out / pipeline.RECORD).exists() and not (out / "result.txt").exists()
