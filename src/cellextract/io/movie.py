"""``open_movie``: pick the reader for a movie file from its extension."""

from __future__ import annotations

import os
from pathlib import Path

from cellextract.errors import InputError
from cellextract.io.base import MovieReader

#: Supported movie extensions (lower case) and their format names.
MOVIE_EXTENSIONS = {".isxd": "isxd", ".tif": "tiff", ".tiff": "tiff", ".avi": "video", ".mp4": "video"}


def check_movie_path(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after checking it names a non-empty movie file.

    Raises
    ------
    InputError
        Missing file, a directory, an unsupported extension or an empty (0-byte) file.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: movie file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a movie file")
    if p.suffix.lower() not in MOVIE_EXTENSIONS:
        allowed = ", ".join(sorted(MOVIE_EXTENSIONS))
        raise InputError(f"{p}: unsupported movie extension '{p.suffix}' (supported: {allowed})")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: file is empty (0 bytes)")
    return p


def open_movie(path: str | os.PathLike) -> MovieReader:
    """Open a movie file for streaming (use as a context manager).

    Parameters
    ----------
    path : str or path
        ``.isxd``, ``.tif``/``.tiff``, ``.avi`` or ``.mp4`` file.

    Returns
    -------
    MovieReader
        With ``path, n_frames, dims (H, W), dtype, fr, start_time, invalid, metadata``,
        ``read(start, stop) -> (n, H, W) float32`` and ``iter_chunks(chunk)``.

    Raises
    ------
    InputError
        One-line message naming the file: missing, directory, unsupported extension,
        unreadable/corrupt/truncated, not a movie, or no frames.
    """
    p = check_movie_path(path)
    fmt = MOVIE_EXTENSIONS[p.suffix.lower()]
    if fmt == "isxd":
        from cellextract.io.isxd import IsxdReader as cls
    elif fmt == "tiff":
        from cellextract.io.tiff import TiffReader as cls
    else:
        from cellextract.io.video import VideoReader as cls
    reader = cls(p)
    if reader.n_frames <= 0 or reader.dims[0] <= 0 or reader.dims[1] <= 0:
        reader.close()
        raise InputError(f"{p}: movie is empty ({reader.n_frames} frames of {reader.dims[0]}x{reader.dims[1]})")
    return reader
