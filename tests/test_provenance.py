"""Result writing: tables land whole or not at all, and read back as written."""
import pandas as pd
import pytest

from kn_utils import provenance


def test_a_table_round_trips_and_a_failed_write_leaves_the_old_file(tmp_path):
    table = pd.DataFrame({"neuron": [0, 1], "score": [0.5, 0.25]})
    path = provenance.save_table(table, tmp_path / "scores.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(path), table)
    with pytest.raises(ValueError, match="Conversion failed for column neuron"):  # pyarrow fails part-way, as a full disk would
        provenance.save_table(pd.DataFrame({"neuron": [object()]}), path)
    pd.testing.assert_frame_equal(pd.read_parquet(path), table)  # the earlier table is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]  # no temporary left behind
