"""Write a simulated movie (optionally as a series of parts) and its ground truth.

The movie format follows the extension of ``out_path`` (``.tif``/``.tiff``, ``.isxd``,
``.avi``) and uses :mod:`cellextract.io.writers`. With ``parts > 1`` the movie is split
into consecutive, nearly equal frame ranges written to ``<stem>_partNN<ext>``
(``NN = 01, 02, ...``); isxd parts carry consecutive start times (part ``k`` starts at
``start_time + first_frame_k / fr``). Ground truth covers the whole series (all parts,
global frame indices) and goes to ``truth_path`` (default ``<stem>_truth.h5`` next to
the movie).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellextract.errors import ParameterError
from cellextract.io.writers import write_avi, write_isxd, write_tiff
from cellextract.log import get_logger
from cellextract.simulate.movie import Simulation, simulate
from cellextract.simulate.truth import write_truth

__all__ = ["write_simulation", "part_paths", "part_ranges", "DEFAULT_START_TIME"]

logger = get_logger(__name__)

#: Start of the first frame of simulated isxd movies (s since the Unix epoch).
DEFAULT_START_TIME = 1_700_000_000.0
_CHUNK_BYTES = 256 << 20   # at most ~256 MB of frames in memory while writing
_EXTS = (".tif", ".tiff", ".isxd", ".avi")


def part_ranges(n_frames: int, parts: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` frame ranges of ``parts`` nearly equal parts."""
    edges = np.linspace(0, n_frames, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def part_paths(out_path, parts: int) -> list[Path]:
    """Movie file names: ``out_path`` itself, or ``<stem>_partNN<ext>`` for a series."""
    out = Path(out_path)
    if parts == 1:
        return [out]
    return [out.with_name(f"{out.stem}_part{i + 1:02d}{out.suffix}") for i in range(parts)]


def _chunks(sim: Simulation, start: int, stop: int, chunk: int):
    for s in range(start, stop, chunk):
        yield sim.frames(s, min(stop, s + chunk))


def _avi_range(sim: Simulation) -> tuple[float, float]:
    """8-bit intensity range for AVI output from 16 sample frames (0 .. 1.1 * max)."""
    idx = np.linspace(0, sim.n_frames - 1, min(16, sim.n_frames)).round().astype(int)
    vmax = max(float(sim.frames(int(t), int(t) + 1).max()) for t in np.unique(idx))
    return 0.0, 1.1 * vmax


def _write_part(path: Path, sim: Simulation, start: int, stop: int, *, chunk: int,
                start_time: float, dtype, avi_range) -> Path:
    ext = path.suffix.lower()
    frames = _chunks(sim, start, stop, chunk)
    if ext in (".tif", ".tiff"):
        return write_tiff(path, frames, fr=sim.fr, n_frames=stop - start, dtype=dtype)
    if ext == ".isxd":
        return write_isxd(path, frames, fr=sim.fr, n_frames=stop - start,
                          start_time=start_time + start / sim.fr,
                          dtype=dtype if dtype is not None else np.float32)
    return write_avi(path, frames, fr=sim.fr, vmin=avi_range[0], vmax=avi_range[1])


def write_simulation(out_path, *, parts: int = 1, truth_path=None, dtype=None,
                     start_time: float = DEFAULT_START_TIME, **sim_kwargs) -> list[Path]:
    """Simulate a movie and write it (as one file or a series) plus its ground truth.

    Parameters
    ----------
    out_path : str or path
        Movie path; the extension (.tif, .tiff, .isxd, .avi) selects the format.
    parts : int
        Number of files of the series (``<stem>_partNN<ext>`` when > 1).
    truth_path : str or path, optional
        Ground-truth HDF5 (default ``<stem>_truth.h5`` next to ``out_path``).
    dtype : numpy dtype, optional
        Stored pixel type for tif/isxd (default float32; isxd also takes uint16).
    start_time : float
        isxd start time of the first frame, s since the Unix epoch.
    **sim_kwargs
        Keywords of :func:`cellextract.simulate.simulate` (``kind, dims, frames,
        n_neurons, fr, motion, max_shift, decay_time, seed, chunk, preset, ...``).

    Returns
    -------
    list of pathlib.Path
        The movie file(s), in series order.
    """
    out = Path(out_path)
    if out.suffix.lower() not in _EXTS:
        raise ParameterError(f"simulate: output {out} must end with one of {_EXTS}")
    sim = simulate(**sim_kwargs)
    parts = int(parts)
    if not 1 <= parts <= sim.n_frames:
        raise ParameterError(f"simulate: parts must be in 1..{sim.n_frames}, got {parts}")
    truth_path = Path(truth_path) if truth_path else out.with_name(f"{out.stem}_truth.h5")
    avi_range = _avi_range(sim) if out.suffix.lower() == ".avi" else None
    chunk = max(1, min(sim.chunk, _CHUNK_BYTES // (4 * sim.dims[0] * sim.dims[1])))
    paths = []
    for path, (a, b) in zip(part_paths(out, parts), part_ranges(sim.n_frames, parts)):
        paths.append(_write_part(path, sim, a, b, chunk=chunk, start_time=start_time,
                                 dtype=dtype, avi_range=avi_range))
    write_truth(truth_path, sim.truth)
    logger.info("wrote simulation %s (%d part(s)) and truth %s", out, parts, truth_path)
    return paths
