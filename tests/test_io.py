"""Artifact writers: atomic, and strict about what they write."""

from __future__ import annotations

import json

import pytest

from conceptspace.io import write_json


def test_write_json_round_trips(tmp_path):
    write_json(tmp_path / "m.json", {"a": 1.5, "b": None, "c": [1, 2]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1.5, "b": None, "c": [1, 2]}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_write_json_refuses_nan_and_infinity(tmp_path, bad):
    with pytest.raises(ValueError, match="m.json"):
        write_json(tmp_path / "m.json", {"runs": {"c080": {"x": bad}}})
    assert not (tmp_path / "m.json").exists()
