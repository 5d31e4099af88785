"""The idx reader/writer: round trips, and a clear error for every kind of damage."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from pathcond.data.errors import DatasetFormatError
from pathcond.data.idx import read_idx, write_idx
from pathcond.errors import DatasetNotFoundError


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_round_trip(tmp_path: Path, dtype: str, suffix: str) -> None:
    arr = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    path = write_idx(tmp_path / f"a{suffix}", arr)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(back, arr)
    assert back.flags.writeable


def test_header_is_standard_big_endian(tmp_path: Path) -> None:
    raw = write_idx(tmp_path / "l", np.array([1, 2, 3], dtype=np.uint8)).read_bytes()
    assert raw == bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3])


def test_gzip_detected_from_content_not_name(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    src = write_idx(tmp_path / "x.gz", arr)
    renamed = src.rename(tmp_path / "x-no-suffix")
    np.testing.assert_array_equal(read_idx(renamed), arr)


def test_ndim_check(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "a", np.zeros((2, 2), np.uint8))
    with pytest.raises(DatasetFormatError, match=r"a: expected an idx file with 3 dimensions"):
        read_idx(path, ndim=3)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="idx file not found: .*nope"):
        read_idx(tmp_path / "nope")


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "bad-idx"
    path.write_bytes(data)
    return path


def test_bad_magic(tmp_path: Path) -> None:
    path = _write(tmp_path, b"PK\x03\x04" + bytes(20))
    with pytest.raises(DatasetFormatError, match=r"bad-idx: bad idx magic number 0x504b0304"):
        read_idx(path)


def test_unknown_type_byte(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="bad idx magic"):
        read_idx(_write(tmp_path, bytes([0, 0, 0x42, 1, 0, 0, 0, 0])))


def test_too_short_for_magic(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match=r"bad-idx: truncated idx file \(2 bytes"):
        read_idx(_write(tmp_path, b"\x00\x00"))


def test_truncated_header(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="truncated idx header"):
        read_idx(_write(tmp_path, bytes([0, 0, 8, 3, 0, 0, 0, 5])))


def test_truncated_data(tmp_path: Path) -> None:
    full = write_idx(tmp_path / "full", np.zeros((4, 5, 5), np.uint8)).read_bytes()
    path = _write(tmp_path, full[:-7])
    with pytest.raises(DatasetFormatError,
                       match=r"bad-idx: truncated: header \(4, 5, 5\) needs 100 data bytes, "
                             r"file has 93"):
        read_idx(path)


def test_trailing_bytes(tmp_path: Path) -> None:
    full = write_idx(tmp_path / "full", np.zeros(3, np.uint8)).read_bytes()
    with pytest.raises(DatasetFormatError, match="has trailing bytes"):
        read_idx(_write(tmp_path, full + b"\x00"))


def test_truncated_gzip(tmp_path: Path) -> None:
    payload = write_idx(tmp_path / "f.gz", np.arange(4000, dtype=np.int32)).read_bytes()
    path = _write(tmp_path, payload[: len(payload) // 2])
    with pytest.raises(DatasetFormatError, match=r"bad-idx: corrupt or truncated gzip data"):
        read_idx(path)


def test_corrupt_gzip(tmp_path: Path) -> None:
    payload = bytearray(gzip.compress(bytes(1000)))
    payload[12:20] = b"\xff" * 8
    with pytest.raises(DatasetFormatError, match="corrupt or truncated gzip data"):
        read_idx(_write(tmp_path, bytes(payload)))


def test_write_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="idx cannot store"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint16))
