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


def test_the_cpu_is_recorded_with_its_family_and_model_numbers(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
                       "model name\t: AMD EPYC\n\nprocessor\t: 1\ncpu family\t: 99\n")
    assert provenance.cpu_model(cpuinfo) == "AMD EPYC (family 26, model 2)"  # the first processor's block
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Neoverse-V2\n")
    assert provenance.cpu_model(cpuinfo) == "Neoverse-V2"  # no family numbers (ARM): the name alone
    assert provenance.cpu_model(tmp_path / "absent") is None
    assert "cpu_model" in provenance.provenance({})
