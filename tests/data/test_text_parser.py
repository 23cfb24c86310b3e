"""The parser's fast paths agree with the plain definitions: hex values decoded two digits at a time equal
int(value, 16) at any byte offset, with any digit bad; a block tokenised on several threads gives the same arrays as
on one."""
import numpy as np
import pyarrow as pa
import pytest

from fixtures.paths import CRITEO_SAMPLE
from src.data.feature_spec import load_feature_spec, resolve
from src.data.text_parser import BlockParser, _hex_keys


def _expected(values):
    keys, missing, invalid = [], [], []
    for v in values:
        try:
            good = len(v) <= 8 and all(c in "0123456789abcdefABCDEF" for c in v.decode())
        except UnicodeDecodeError:
            good = False
        keys.append(int(v, 16) if v and good else 0)
        missing.append(not v)
        invalid.append(bool(v) and not good)
    return keys, missing, invalid


@pytest.mark.parametrize("lead", [b"", b"abc", b"1234567"])     # the 8-digit values start at an odd byte offset too
def test_hex_values_decode_like_int_base_16(lead):
    rng = np.random.default_rng(5)
    values = [bytes(f"{x:08x}", "ascii") for x in rng.integers(0, 2 ** 32, 50, dtype=np.uint64)]
    values += [b"DEADbeef", b"00000000", b"ffffffff", b""]
    for pos in range(8):                                          # a bad digit at every position
        values.append(b"0" * pos + b"g" + b"1" * (7 - pos))
    values.append(b"0000\xff000")
    arr = pa.array([lead] + values, pa.binary()).slice(1)         # offsets[0] = len(lead)
    keys, missing, invalid = _hex_keys(arr)
    want = _expected(values)
    assert keys.tolist() == want[0] and missing.tolist() == want[1] and invalid.tolist() == want[2]
    short = pa.array([b"ab", b"", b"123456789", b"0g"] + values[:3], pa.binary())   # other lengths: the general path
    got = _hex_keys(short)
    assert [a.tolist() for a in got] == [list(x) for x in _expected(short.to_pylist())]


def _criteo():
    return resolve(load_feature_spec("criteo_kaggle"), None, "train.txt")


def test_tokeniser_threads_give_the_same_arrays():
    text = open(CRITEO_SAMPLE, "rb").read()
    text = text.replace(b"\t", b"\tx", 1)          # one bad line (a value that is not an integer) among good ones
    text = (text * 40)                             # several of the tokeniser's 4 MB blocks
    one = BlockParser("f", _criteo(), threads=1).parse(1, text)
    two_parser = BlockParser("f", _criteo(), threads=2)
    two = two_parser.parse(1, text)
    for name in ("label", "dense", "keys", "missing", "line"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    assert two_parser.bad.counts["dense"] == 40


@pytest.mark.parametrize("lookups", [1, 8, 26, 35])
def test_missing_flags_pack_to_bits_and_back(lookups):
    """Vocabulary and id modes keep a record's missing flags as bits (4 bytes instead of 26 for Criteo)."""
    from src.data.pieces import pack_missing, unpack_missing
    missing = np.random.default_rng(lookups).random((lookups, 50)) < 0.3
    bits = pack_missing(missing)
    assert bits.shape == (50, -(-lookups // 8)) and bits.dtype == np.uint8
    assert np.array_equal(unpack_missing(bits, lookups), missing)
