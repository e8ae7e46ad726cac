"""Residue validation and tokenisation against the ESM-2 vocabulary."""
import pytest

from kn_utils.alphabet import CLS_ID, EOS_ID, ESM2_VOCAB, PAD_ID, SequenceError, encode, pad_batch, validate_sequence


def test_vocabulary_matches_esm2_layout():
    assert len(ESM2_VOCAB) == 33
    assert (ESM2_VOCAB[CLS_ID], ESM2_VOCAB[PAD_ID], ESM2_VOCAB[EOS_ID]) == ("<cls>", "<pad>", "<eos>")
    assert ESM2_VOCAB[4] == "L" and ESM2_VOCAB[32] == "<mask>"


def test_normalises_case_whitespace_and_stop():
    assert validate_sequence("r1", " mkt ay\n*") == "MKTAY"


@pytest.mark.parametrize("raw, problem", [("MKT1AY", "invalid residue"), ("", "empty sequence"), ("MK*TAY", "invalid residue")])
def test_bad_sequence_names_file_record_and_problem(raw, problem):
    with pytest.raises(SequenceError, match=rf"in.fasta: record 'seq7': {problem}"):
        validate_sequence("seq7", raw, "in.fasta")


def test_over_long_sequence_is_refused_when_a_limit_is_set():
    with pytest.raises(SequenceError, match="longer than the limit of 5"):
        validate_sequence("r", "MKTAYI", max_length=5)


def test_encode_adds_cls_eos_and_truncates():
    ids = encode("MKTAY", max_residues=3)
    assert ids[0] == CLS_ID and ids[-1] == EOS_ID and len(ids) == 5
    assert [ESM2_VOCAB[i] for i in ids[1:-1]] == ["M", "K", "T"]


def test_pad_batch_masks_padding():
    input_ids, mask = pad_batch([encode("MK"), encode("MKTAY")])
    assert input_ids.shape == (2, 7)
    assert mask.sum(1).tolist() == [4, 7]
    assert (input_ids[0, 4:] == PAD_ID).all()
