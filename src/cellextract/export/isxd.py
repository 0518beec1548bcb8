"""Inscopix outputs, one set per input file ``k`` (``NNN`` = k with 3 digits, user order).

- ``cellset_raw.NNN.isxd``: footprints and raw traces ``C + YrA``;
- ``cellset_denoised.NNN.isxd``: footprints and denoised traces ``C``;
- ``neural_events.NNN.isxd``: per cell, an event at each valid frame where
  ``S > event_threshold * neurons_sn`` with amplitude ``S``, offsets in microseconds
  since that file's start.

Cells are named ``C000, C001, ...`` in model order; status ``accepted`` / ``rejected``
from ``idx_components`` (``undecided`` when the model was not evaluated). Samples of
dropped / cropped / invalid frames are NaN. Everything is written under temporary names
and renamed once all files are complete.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import isx
import numpy as np

from cellextract.cnmf.estimates import Estimates
from cellextract.errors import InputError, ParameterError
from cellextract.export._atomic import commit, remove_quietly, temp_path
from cellextract.export.footprints import FootprintImages
from cellextract.export.isxd_header import set_extra_properties
from cellextract.export.isxd_timing import (FileTiming, file_timing, normalize_files,
                                            sample_offsets_us)
from cellextract.log import get_logger

__all__ = ["cell_names", "cell_statuses", "event_frames", "write_cellset", "write_eventset",
           "output_names", "export_isxd"]

log = get_logger(__name__)

#: ``extraProperties.idps.cellset`` written into our cell sets.
CELLSET_PROPS = {"method": "caiman", "type": "analog", "units": "a.u."}


def cell_names(K: int) -> list[str]:
    """Names ``C000 .. C{K-1}`` (at least 3 digits, more when K > 1000)."""
    width = max(3, len(str(max(K - 1, 0))))
    return [f"C{k:0{width}d}" for k in range(K)]


def cell_statuses(est: Estimates) -> list[str]:
    """Per-component status: 'accepted' / 'rejected', or 'undecided' if not evaluated."""
    K = est.n_components
    if est.idx_components is None:
        return ["undecided"] * K
    good = set(np.asarray(est.idx_components, dtype=int).tolist())
    return ["accepted" if k in good else "rejected" for k in range(K)]


def event_frames(S: np.ndarray, *, threshold: np.ndarray | float = 0.0,
                 valid: np.ndarray | None = None) -> list[np.ndarray]:
    """Frames with an event for each component.

    Parameters
    ----------
    S : ndarray, shape (K, T)
        Deconvolved activity.
    threshold : float or ndarray, shape (K,)
        Events where ``S[k, t] > threshold[k]``.
    valid : ndarray of bool, shape (T,), optional
        Frames that may hold events.

    Returns
    -------
    list of ndarray of int
        K arrays of frame indices (within ``S``).
    """
    S = np.asarray(S, dtype=np.float64)
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (S.shape[0],))
    hit = S > thr[:, None]
    if valid is not None:
        hit &= np.asarray(valid, dtype=bool)[None, :]
    return [np.flatnonzero(row) for row in hit]


def write_cellset(path: str | os.PathLike, *, images, traces: np.ndarray,
                  names: list[str], statuses: list[str], timing: isx.Timing,
                  spacing: isx.Spacing, extra_properties: dict | None = None) -> None:
    """Write an isxd cell set.

    Parameters
    ----------
    path : str or PathLike
        Output file (must not exist).
    images : ndarray, shape (K, H, W), or FootprintImages
        Footprints in the movie's row/column orientation (indexable by cell).
    traces : ndarray, shape (K, n_frames)
        Traces; NaN at invalid frames.
    names, statuses : list of str
        K names and statuses ('accepted', 'rejected', 'undecided').
    timing, spacing : isx.Timing, isx.Spacing
        Of the input file.
    extra_properties : dict or None
        Written into the header's ``extraProperties`` after the file is closed.
    """
    cs = isx.CellSet.write(str(path), timing, spacing)
    for k, name in enumerate(names):
        cs.set_cell_data(k, np.ascontiguousarray(images[k], dtype=np.float32),
                         np.ascontiguousarray(traces[k], dtype=np.float32), name)
    for k, status in enumerate(statuses):
        cs.set_cell_status(k, status)
    cs.flush()
    del cs
    if extra_properties:
        set_extra_properties(path, extra_properties)


def _write_empty_eventset(path: str, timing: isx.Timing) -> None:
    """Event set with no cells (``isx.EventSet.write`` refuses an empty name list)."""
    es = isx.EventSet()
    names = isx._internal.list_to_ctypes_array([], ctypes.c_char_p)
    isx._internal.c_api.isx_write_events(path.encode("utf-8"), timing._impl, names, 0,
                                         ctypes.byref(es._ptr))
    es.flush()
    del es


def write_eventset(path: str | os.PathLike, *, offsets_us: list[np.ndarray],
                   amplitudes: list[np.ndarray], names: list[str], timing: isx.Timing,
                   extra_properties: dict | None = None) -> None:
    """Write an isxd event set.

    Parameters
    ----------
    path : str or PathLike
        Output file (must not exist).
    offsets_us : list of ndarray of uint64
        Per cell, event times in microseconds since the file start.
    amplitudes : list of ndarray of float
        Per cell, event amplitudes (same lengths as ``offsets_us``).
    names : list of str
        Cell names (may be empty).
    timing : isx.Timing
        Of the input file.
    extra_properties : dict or None
        Written into the header's ``extraProperties``.
    """
    if not names:
        _write_empty_eventset(str(path), timing)
    else:
        es = isx.EventSet.write(str(path), timing, list(names))
        for k in range(len(names)):
            es.set_cell_data(k, np.asarray(offsets_us[k], dtype=np.uint64),
                             np.asarray(amplitudes[k], dtype=np.float32))
        es.flush()
        del es
    if extra_properties:
        set_extra_properties(path, extra_properties)


def output_names(k: int) -> dict[str, str]:
    """File names of input ``k``: keys ``raw``, ``denoised``, ``events``."""
    return {"raw": f"cellset_raw.{k:03d}.isxd", "denoised": f"cellset_denoised.{k:03d}.isxd",
            "events": f"neural_events.{k:03d}.isxd"}


def _event_threshold(est: Estimates, event_threshold: float) -> np.ndarray:
    K = est.n_components
    if event_threshold < 0:
        raise ParameterError(f"event_threshold must be >= 0, got {event_threshold}")
    if event_threshold == 0:
        return np.zeros(K)
    if est.neurons_sn is None:
        raise ParameterError("event_threshold > 0 needs the trace noise levels (neurons_sn)")
    return event_threshold * np.asarray(est.neurons_sn, dtype=np.float64).ravel()


def _cellset_props(ft: FileTiming) -> dict:
    props = dict(ft.extra_properties)
    idps = dict(props.get("idps") or {})
    idps["cellset"] = dict(CELLSET_PROPS)
    props["idps"] = idps
    return props


def _file_traces(est: Estimates, file: dict, invalid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s, n = int(file["start_frame"]), int(file["n_frames"])
    if s < 0 or s + n > est.n_frames:
        raise InputError(f"{file.get('path')}: frames {s}..{s + n} outside the model's "
                         f"{est.n_frames} frames")
    C = np.array(est.C[:, s:s + n], dtype=np.float32)
    if est.YrA is None:
        log.warning("no residuals YrA: raw traces equal denoised traces")
        raw = C.copy()
    else:
        raw = C + np.asarray(est.YrA[:, s:s + n], dtype=np.float32)
    C[:, invalid] = np.nan
    raw[:, invalid] = np.nan
    return raw, C


def _check_files(est: Estimates, files: list[dict]) -> None:
    total = sum(int(f["n_frames"]) for f in files)
    if not files:
        raise InputError("no input files to export")
    if total != est.n_frames:
        raise InputError(f"the input files have {total} frames, the model {est.n_frames}")


def _write_one_file(tmp: dict, est: Estimates, file: dict, ft: FileTiming, *,
                    images: FootprintImages, names: list[str], statuses: list[str],
                    threshold: np.ndarray) -> int:
    raw, den = _file_traces(est, file, ft.invalid)
    write_cellset(tmp["raw"], images=images, traces=raw, names=names, statuses=statuses,
                  timing=ft.timing, spacing=ft.spacing, extra_properties=_cellset_props(ft))
    write_cellset(tmp["denoised"], images=images, traces=den, names=names, statuses=statuses,
                  timing=ft.timing, spacing=ft.spacing, extra_properties=_cellset_props(ft))
    s, n = int(file["start_frame"]), int(file["n_frames"])
    S = np.zeros((len(names), n)) if est.S is None else np.asarray(est.S[:, s:s + n])
    frames = event_frames(S, threshold=threshold, valid=~ft.invalid)
    offsets = sample_offsets_us(n, ft.period)
    write_eventset(tmp["events"], offsets_us=[offsets[f] for f in frames],
                   amplitudes=[S[k, f] for k, f in enumerate(frames)], names=names,
                   timing=ft.timing, extra_properties=ft.extra_properties)
    return int(sum(len(f) for f in frames))


def export_isxd(out_dir: str | os.PathLike, est: Estimates, files: list[dict], *,
                event_threshold: float = 0.0) -> list[dict[str, Path]]:
    """Write the cell sets and event sets of every input file.

    Parameters
    ----------
    out_dir : str or PathLike
        Output directory (created if missing).
    est : Estimates
        The evaluated model over the concatenated series: ``C, YrA, S`` of shape (K, T)
        with ``T = sum(n_frames)``.
    files : list of dict
        Input file descriptions in the user's order (see
        :func:`cellextract.export.isxd_timing.normalize_files`; ``SeriesInfo.file_table()``
        rows work as they are).
    event_threshold : float
        Events where ``S > event_threshold * neurons_sn`` (0: every positive ``S``).

    Returns
    -------
    list of dict
        Per input file, the final paths under keys ``raw``, ``denoised``, ``events``.
    """
    files = normalize_files(files)
    _check_files(est, files)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = FootprintImages(est.A, est.dims)
    names, statuses = cell_names(est.n_components), cell_statuses(est)
    threshold = _event_threshold(est, event_threshold)
    finals = [{key: out / name for key, name in output_names(k).items()}
              for k in range(len(files))]
    temps = [{key: temp_path(p) for key, p in d.items()} for d in finals]
    try:
        for k, file in enumerate(files):
            for p in temps[k].values():
                remove_quietly(p)
            ft = file_timing(file, est.dims)
            n_ev = _write_one_file(temps[k], est, file, ft, images=images, names=names,
                                   statuses=statuses, threshold=threshold)
            log.info("file %d (%s): %d frames, %d cells, %d events", k, file.get("path"),
                     file["n_frames"], len(names), n_ev)
    except BaseException:
        for d in temps:
            for p in d.values():
                remove_quietly(p)
        raise
    for d_tmp, d_fin in zip(temps, finals):
        for key in d_tmp:
            commit(d_tmp[key], d_fin[key])
    return finals
