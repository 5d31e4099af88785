"""Reader and writer of the idx format used by MNIST-style datasets (plain or gzip-compressed).

An idx file is: two zero bytes, one byte naming the element type, one byte giving the number of
dimensions ``d``, then ``d`` big-endian uint32 sizes, then the elements in big-endian C order.
See http://yann.lecun.com/exdb/mnist/ (section "FILE FORMATS FOR THE MNIST DATABASE").
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from pathcond._files import atomic_write_bytes
from pathcond.data.errors import DatasetFormatError
from pathcond.errors import DatasetNotFoundError

#: idx type byte -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """Read the file's bytes, gunzipping them when the file starts with the gzip magic."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"idx file not found: {path}") from None
    except OSError as exc:
        raise DatasetNotFoundError(f"cannot read idx file {path}: {exc.strerror or exc}") from None
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetFormatError(f"{path}: corrupt or truncated gzip data ({exc})") from None


def read_idx(path: str | Path, *, ndim: int | None = None) -> np.ndarray:
    """Read an idx file (optionally gzip-compressed, detected from its content).

    Args:
        path: the file.
        ndim: if given, the number of dimensions the file must have.

    Returns:
        A writable numpy array in native byte order with the file's shape and element type.

    Raises:
        DatasetNotFoundError: the file does not exist or cannot be read.
        DatasetFormatError: bad magic number, unknown element type, wrong number of
            dimensions, or a data section shorter or longer than the header announces.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetFormatError(f"{path}: truncated idx file ({len(data)} bytes, no header)")
    if data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES or data[3] == 0:
        raise DatasetFormatError(
            f"{path}: bad idx magic number 0x{data[:4].hex()} (not an idx file?)")
    dtype, dims_n = IDX_DTYPES[data[2]], data[3]
    if ndim is not None and dims_n != ndim:
        raise DatasetFormatError(f"{path}: expected an idx file with {ndim} dimensions, "
                                 f"found {dims_n}")
    header_len = 4 + 4 * dims_n
    if len(data) < header_len:
        raise DatasetFormatError(f"{path}: truncated idx header")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=dims_n, offset=4))
    expected = math.prod(shape) * dtype.itemsize
    found = len(data) - header_len
    if found != expected:
        what = "truncated" if found < expected else "has trailing bytes"
        raise DatasetFormatError(f"{path}: {what}: header {shape} needs {expected} data bytes, "
                                 f"file has {found}")
    arr = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header_len)
    return arr.reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an idx file, gzip-compressed when ``path`` ends with ``.gz``.

    Args:
        path: destination file (its parent directory must exist).
        array: an array of at least one dimension whose dtype is one of the idx element
            types (uint8, int8, int16, int32, float32, float64).

    Returns:
        The path written.
    """
    path = Path(path)
    arr = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    native = arr.dtype.newbyteorder("=")
    if native not in codes:
        raise TypeError(f"idx cannot store dtype {arr.dtype}")
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"idx needs 1 to 255 dimensions, got {arr.ndim}")
    header = bytes([0, 0, codes[native], arr.ndim])
    header += np.asarray(arr.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(arr, dtype=native.newbyteorder(">")).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    return atomic_write_bytes(path, payload)
