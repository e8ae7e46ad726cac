"""Result writing: arrays, tables and JSON land whole or not at all, and read back as written."""
import numpy as np
import pandas as pd
import pytest

from kn_utils import provenance


def test_arrays_and_tables_round_trip_and_a_failed_write_leaves_the_old_file(tmp_path):
    arrays = {"mean": np.arange(6.0).reshape(2, 3), "labels": np.array([0, 5])}
    path = provenance.save_arrays(tmp_path / "scores.npz", **arrays)
    assert path == tmp_path / "scores.npz"  # not scores.npz.npz: numpy appends the suffix only to names
    with np.load(path) as saved:
        assert {name: saved[name].tolist() for name in saved} == {name: a.tolist() for name, a in arrays.items()}
    table = pd.DataFrame({"neuron": [0, 1], "score": [0.5, 0.25]})
    provenance.save_table(table, tmp_path / "scores.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "scores.parquet"), table)
    class Failing:
        """An array that fails half-way through the archive, as a full disk or a kill would."""

        def __array__(self, *args, **kwargs):
            raise OSError("no space left on device")

    with pytest.raises(OSError, match="no space left"):
        provenance.save_arrays(tmp_path / "scores.npz", first=np.zeros(3), second=Failing())
    with np.load(path) as saved:
        assert saved["labels"].tolist() == [0, 5]  # the earlier archive is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.npz", "scores.parquet"]  # no temporary left behind
