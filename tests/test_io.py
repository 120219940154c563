"""mer_core.io: atomic writes (temporary name, then rename) and the scratch-output notice."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from mer_core import io


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_each_writer_replaces_the_file_and_leaves_no_temporary(tmp_path):
    io.write_text(tmp_path / "a.txt", "old")
    io.write_text(tmp_path / "a.txt", "new")
    io.write_json(tmp_path / "sub" / "b.json", {"x": np.int64(3), "y": np.arange(2)})
    io.write_csv(tmp_path / "c.csv", pd.DataFrame({"v": [1, 2]}))
    io.write_npy(tmp_path / "d.npy", np.ones((2, 2), np.uint8))
    assert (tmp_path / "a.txt").read_text() == "new"
    assert json.loads((tmp_path / "sub" / "b.json").read_text()) == {"x": 3, "y": [0, 1]}
    assert pd.read_csv(tmp_path / "c.csv")["v"].tolist() == [1, 2]
    assert np.load(tmp_path / "d.npy").sum() == 4
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "sub") == []
    mode = os.stat(tmp_path / "a.txt").st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # the usual mode, not mkstemp's 0600


def test_a_write_interrupted_by_an_exception_keeps_the_old_file(tmp_path):
    target = tmp_path / "table.csv"
    io.write_csv(target, pd.DataFrame({"v": [1, 2, 3]}))
    before = target.read_bytes()

    with pytest.raises(RuntimeError, match="killed"):
        with io.atomic_path(target) as tmp:
            tmp.write_text("v\n9\n")  # half of the new content is on disk ...
            raise RuntimeError("killed")  # ... when the run dies
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []

    class Unserialisable:
        pass

    with pytest.raises(TypeError, match="Unserialisable"):
        io.write_json(tmp_path / "m.json", {"a": Unserialisable()})
    assert not (tmp_path / "m.json").exists() and _leftovers(tmp_path) == []


def test_announce_outputs_says_when_the_pipeline_is_untouched(capsys):
    io.announce_outputs(out_dir="scratch/00_data", figures="scratch/00_data/figures")
    out = capsys.readouterr().out
    assert "out_dir=scratch/00_data" in out and "pipeline's files are untouched" in out
    io.announce_outputs(out_dir="data")
    assert "untouched" not in capsys.readouterr().out
