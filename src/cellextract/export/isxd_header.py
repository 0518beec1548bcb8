"""Read and amend the JSON header of ``.isxd`` files.

An ``.isxd`` file ends with its JSON header, one NUL byte, and the header length
(bytes, without the NUL) as a little-endian unsigned 64-bit integer. The ``isx`` API
reads ``extraProperties`` (``get_acquisition_info``) but cannot write it, so the
exporters carry the input movie's ``extraProperties`` over by rewriting that trailer
of a finished, closed file.
"""

from __future__ import annotations

import json
import os
import struct

from cellextract.errors import InputError

__all__ = ["read_isxd_header", "read_extra_properties", "set_extra_properties"]

_LEN = struct.Struct("<Q")


def _trailer(path: str | os.PathLike) -> tuple[dict, int]:
    """Return the parsed header and the byte offset where it starts."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if size < _LEN.size + 2:
            raise InputError(f"{path}: too small to be an isxd file")
        f.seek(size - _LEN.size)
        n = _LEN.unpack(f.read(_LEN.size))[0]
        start = size - _LEN.size - n - 1
        if n <= 0 or start < 0:
            raise InputError(f"{path}: no isxd JSON header found")
        f.seek(start)
        raw = f.read(n)
    try:
        return json.loads(raw.decode("utf-8")), start
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable isxd JSON header ({exc})") from None


def read_isxd_header(path: str | os.PathLike) -> dict:
    """Return the JSON header of an ``.isxd`` file as a dict."""
    return _trailer(path)[0]


def read_extra_properties(path: str | os.PathLike) -> dict:
    """Return the ``extraProperties`` of an ``.isxd`` file ({} when null or absent)."""
    props = read_isxd_header(path).get("extraProperties")
    return dict(props) if isinstance(props, dict) else {}


def set_extra_properties(path: str | os.PathLike, props: dict | None) -> None:
    """Replace the ``extraProperties`` of a finished (closed) ``.isxd`` file in place.

    Parameters
    ----------
    path : str or PathLike
        File written and closed by ``isx``.
    props : dict or None
        New ``extraProperties`` (JSON-serializable); None writes ``null``.
    """
    header, start = _trailer(path)
    header["extraProperties"] = props
    raw = json.dumps(header, indent=4).encode("utf-8")
    with open(path, "r+b") as f:
        f.truncate(start)
        f.seek(start)
        f.write(raw + b"\x00" + _LEN.pack(len(raw)))
