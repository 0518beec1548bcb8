"""Movie writers shared by the simulator and the tests: TIFF, isxd, AVI.

Every writer streams: ``frames`` is either an array ``(T, H, W)`` or an iterable of
chunks ``(n, H, W)`` (2-D ``(H, W)`` items count as one frame). Output goes to a
temporary name in the same directory and is renamed to ``path`` only once complete, so a
failure never leaves a half-written movie behind. An existing ``path`` is replaced.
"""

from __future__ import annotations

import itertools
import os
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from cellextract.log import get_logger

logger = get_logger(__name__)

_CHUNK = 100
_BIGTIFF_BYTES = 2**31  # 2 GB
_TIFF_DTYPES = {np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32)}


# --------------------------------------------------------------------------- helpers
def _as_chunk(item) -> np.ndarray:
    arr = np.asarray(item)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"frames must be (n, H, W) chunks or (H, W) frames, got shape {arr.shape}")
    return arr


def _chunks(frames, chunk: int = _CHUNK) -> Iterator[np.ndarray]:
    """Yield ``(n, H, W)`` chunks from an array or an iterable of chunks/frames."""
    if isinstance(frames, np.ndarray):
        arr = _as_chunk(frames)
        for s in range(0, arr.shape[0], chunk):
            yield arr[s:s + chunk]
    else:
        for item in frames:
            yield _as_chunk(item)


def _peek(frames) -> tuple[np.ndarray, Iterator[np.ndarray], int | None]:
    """Return ``(first_chunk, chunk_iterator_including_first, total_frames_or_None)``."""
    total = _as_chunk(frames).shape[0] if isinstance(frames, np.ndarray) else None
    it = _chunks(frames)
    try:
        first = next(it)
    except StopIteration:
        raise ValueError("no frames to write") from None
    return first, itertools.chain([first], it), total


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


class _Atomic:
    """Context manager giving a temporary path that is renamed to ``path`` on success."""

    def __init__(self, path):
        self.path = Path(path)
        self.tmp = _tmp_path(self.path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.unlink(missing_ok=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _frames_of(chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for c in chunks:
        yield from c


def _check_count(path, written: int, expected: int | None) -> None:
    if expected is not None and written != expected:
        raise ValueError(f"{path}: got {written} frames, expected n_frames={expected}")


# --------------------------------------------------------------------------- TIFF
def write_tiff(path, frames, *, fr: float | None, n_frames: int | None = None,
               dtype=None, bigtiff: bool | None = None) -> Path:
    """Write a multi-page TIFF movie, streaming.

    Parameters
    ----------
    path : str or path
        Output ``.tif``/``.tiff``.
    frames : array ``(T, H, W)`` or iterable of ``(n, H, W)`` chunks
        Movie frames.
    fr : float or None
        Frame rate in Hz, stored as ImageJ ``finterval = 1 / fr`` (None: no timing).
    n_frames : int, optional
        Total number of frames when ``frames`` is an iterable. When the total is known
        the file is an ImageJ hyperstack (axes ``TYX``); when it is not, a tifffile
        "shaped" BigTIFF with ``finterval``/``fps`` in its JSON description.
    dtype : numpy dtype, optional
        Stored pixel type (uint8, uint16, int16 or float32); default: the frames' own
        type when it is one of those, else float32. Values are cast, not rescaled.
    bigtiff : bool, optional
        Default: BigTIFF when the data exceed 2 GB (or the total is unknown).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import tifffile

    first, chunks, total = _peek(frames)
    total = total if total is not None else n_frames
    dt = np.dtype(dtype) if dtype is not None else first.dtype
    if dt not in _TIFF_DTYPES:
        dt = np.dtype(np.float32)
    H, W = first.shape[1:]
    meta = {} if fr is None else {"finterval": 1.0 / float(fr)}
    written = 0

    def pages():
        nonlocal written
        for frame in _frames_of(chunks):
            if frame.shape != (H, W):
                raise ValueError(f"{path}: frame of shape {frame.shape}, expected {(H, W)}")
            written += 1
            yield np.asarray(frame, dtype=dt)

    with _Atomic(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*nonconformant BigTIFF ImageJ.*")
        if total is not None:
            big = bigtiff if bigtiff is not None else total * H * W * dt.itemsize > _BIGTIFF_BYTES
            with tifffile.TiffWriter(tmp, imagej=True, bigtiff=big) as tw:
                tw.write(pages(), shape=(total, H, W), dtype=dt,
                         metadata={"axes": "TYX", **meta})
        else:
            big = True if bigtiff is None else bigtiff
            fps = {} if fr is None else {"fps": float(fr)}
            with tifffile.TiffWriter(tmp, bigtiff=big) as tw:
                for page in pages():
                    tw.write(page, contiguous=True, metadata={**meta, **fps})
        _check_count(path, written, total)
    logger.info("wrote %s: %d frames %dx%d %s", path, written, H, W, dt.name)
    return Path(path)


# --------------------------------------------------------------------------- isxd
def write_isxd(path, frames, *, fr: float, start_time: float = 0.0, n_frames: int | None = None,
               dtype=np.float32, dropped=(), cropped=()) -> Path:
    """Write an Inscopix ``.isxd`` movie with ``isx.Movie.write``.

    Parameters
    ----------
    path : str or path
        Output ``.isxd``.
    frames : array ``(T, H, W)`` or iterable of ``(n, H, W)`` chunks
        All ``T`` frames, including placeholders for dropped/cropped ones (those are
        skipped, as an nVista recording does not store them).
    fr : float
        Frame rate in Hz (stored as the period ``1/fr`` as an exact fraction).
    start_time : float
        Start of the first frame, seconds since the Unix epoch.
    n_frames : int, optional
        Required when ``frames`` is an iterable (isxd timing is written up front).
    dtype : {np.float32, np.uint16}
        Stored pixel type (uint16 values are rounded and clipped to 0..65535).
    dropped : sequence of int
        Indices of dropped frames.
    cropped : sequence of (first, last)
        Inclusive index ranges of cropped frames.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import isx

    first, chunks, total = _peek(frames)
    total = total if total is not None else n_frames
    if total is None:
        raise ValueError(f"{path}: n_frames is required to write an isxd from an iterable")
    if not fr or fr <= 0:
        raise ValueError(f"{path}: fr must be > 0, got {fr}")
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.uint16)):
        raise ValueError(f"{path}: isxd pixel type must be float32 or uint16, got {dt}")
    H, W = first.shape[1:]
    skip = set(int(i) for i in dropped)
    for a, b in cropped:
        skip.update(range(int(a), int(b) + 1))
    timing = isx.Timing(num_samples=int(total), period=isx.Duration._from_secs_float(1.0 / fr),
                        start=isx.Time._from_secs_since_epoch(
                            isx.Duration._from_secs_float(float(start_time))),
                        dropped=sorted(int(i) for i in dropped),
                        cropped=[[int(a), int(b)] for a, b in cropped])
    with _Atomic(path) as tmp:
        movie = isx.Movie.write(str(tmp), timing, isx.Spacing((int(H), int(W))), dt.type)
        i = -1
        for i, frame in enumerate(_frames_of(chunks)):
            if i >= total:
                break
            if i in skip:
                continue
            if dt == np.uint16:
                frame = np.clip(np.rint(frame), 0, 65535)
            _set_isxd_frame(movie, i, np.ascontiguousarray(frame, dtype=dt))
        movie.flush()
        del movie
        _check_count(path, i + 1, total)
    logger.info("wrote %s: %d frames %dx%d %s at %g Hz", path, total, H, W, dt.name, fr)
    return Path(path)


def _set_isxd_frame(movie, index: int, frame: np.ndarray) -> None:
    """``movie.set_frame_data(index, frame)`` without its per-pixel Python copy.

    ``isx.Movie.set_frame_data`` builds a ctypes array from a Python argument list
    (~20 frames/s at 256x256); this passes the C-contiguous buffer to the same C
    function. Falls back to ``set_frame_data`` if the isx internals differ.
    """
    import isx

    api = getattr(getattr(isx, "_internal", None), "c_api", None)
    fn = {np.dtype(np.float32): ("isx_movie_write_frame_f32", "FloatPtr"),
          np.dtype(np.uint16): ("isx_movie_write_frame_u16", "UInt16Ptr")}.get(frame.dtype)
    if (api is None or fn is None or not hasattr(api, fn[0]) or movie.mode != "w"
            or frame.shape != tuple(movie.spacing.num_pixels) or not frame.flags.c_contiguous):
        movie.set_frame_data(index, frame)
        return
    isx._internal.validate_ptr(movie._ptr)
    getattr(api, fn[0])(movie._ptr, int(index), frame.ctypes.data_as(getattr(isx._internal, fn[1])))


# --------------------------------------------------------------------------- AVI
def avi_codec() -> str:
    """Return the FourCC used for AVI output: lossless 'FFV1' if OpenCV has it, else 'MJPG'."""
    import tempfile

    import cv2

    with tempfile.TemporaryDirectory() as d:
        w = cv2.VideoWriter(os.path.join(d, "probe.avi"), cv2.VideoWriter_fourcc(*"FFV1"),
                            10.0, (16, 16), False)
        ok = w.isOpened()
        w.release()
    return "FFV1" if ok else "MJPG"


def write_avi(path, frames, *, fr: float, vmin: float | None = None,
              vmax: float | None = None, codec: str | None = None, pad_odd: bool = False) -> Path:
    """Write a gray 8-bit AVI movie with OpenCV.

    Scaling: uint8 frames are written unchanged. Anything else is mapped linearly,
    ``v8 = round(255 * (v - vmin) / (vmax - vmin))`` clipped to 0..255, with ``vmin``/
    ``vmax`` defaulting to the movie's min/max (NaN ignored) for an array input; for an
    iterable of non-uint8 chunks ``vmin`` and ``vmax`` must be given.

    Parameters
    ----------
    path : str or path
        Output ``.avi``.
    frames : array ``(T, H, W)`` or iterable of ``(n, H, W)`` chunks
        Movie frames.
    fr : float
        Frame rate stored in the AVI header.
    vmin, vmax : float, optional
        Intensity range mapped to 0 and 255.
    codec : str, optional
        FourCC; default :func:`avi_codec` (lossless FFV1 when available, else MJPG).
    pad_odd : bool
        OpenCV's video writer silently drops the last row/column of odd-sized frames, so
        odd ``H`` or ``W`` raise ValueError unless ``pad_odd=True``, which appends a copy
        of the last row/column (the file then holds ``(H + H % 2, W + W % 2)`` frames).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import cv2

    first, chunks, _ = _peek(frames)
    scale = first.dtype != np.uint8
    if scale and (vmin is None or vmax is None):
        if not isinstance(frames, np.ndarray):
            raise ValueError(f"{path}: vmin and vmax are required to scale an iterable of "
                             f"{first.dtype} chunks to 8 bit")
        vmin = float(np.nanmin(frames)) if vmin is None else vmin
        vmax = float(np.nanmax(frames)) if vmax is None else vmax
    span = (vmax - vmin) if scale and vmax > vmin else 1.0
    H, W = first.shape[1:]
    pad = (0, H % 2), (0, W % 2)
    if (H % 2 or W % 2) and not pad_odd:
        raise ValueError(f"{path}: AVI frames must have even height and width, got {H}x{W} "
                         "(OpenCV would crop them); pass pad_odd=True to pad")
    fourcc = codec or avi_codec()
    n = 0
    with _Atomic(path) as tmp:
        size = (W + pad[1][1], H + pad[0][1])
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), float(fr), size, False)
        if not writer.isOpened():
            raise ValueError(f"{path}: OpenCV cannot write AVI with codec {fourcc}")
        try:
            for chunk in chunks:
                if scale:
                    c = np.nan_to_num((chunk.astype(np.float32) - vmin) * (255.0 / span), nan=0.0)
                    chunk = np.clip(np.rint(c), 0, 255).astype(np.uint8)
                for frame in chunk:
                    if frame.shape != (H, W):
                        raise ValueError(f"{path}: frame of shape {frame.shape}, expected {(H, W)}")
                    writer.write(np.ascontiguousarray(np.pad(frame, pad, mode="edge")))
                    n += 1
        finally:
            writer.release()
    logger.info("wrote %s: %d frames %dx%d codec %s at %g fps", path, n, H, W, fourcc, fr)
    return Path(path)
