"""``output_metadata.json``: cell counts and a per-file timing summary."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from cellextract.cnmf.estimates import Estimates
from cellextract.export._atomic import commit, remove_quietly, temp_path
from cellextract.export.isxd import cell_statuses, event_frames, output_names
from cellextract.export.isxd_timing import normalize_files

__all__ = ["cell_counts", "file_summary", "build_output_metadata", "write_output_metadata"]


def cell_counts(est: Estimates) -> dict[str, int]:
    """Counts ``{'accepted', 'rejected', 'undecided', 'total'}`` of components."""
    st = cell_statuses(est)
    return {"accepted": st.count("accepted"), "rejected": st.count("rejected"),
            "undecided": st.count("undecided"), "total": len(st)}


def _num(x):
    return None if x is None else float(x)


def file_summary(k: int, file: dict, est: Estimates, *, event_threshold: float = 0.0) -> dict:
    """Timing summary and event count of input file ``k``.

    Parameters
    ----------
    k : int
        Index of the file in the user's order.
    file : dict
        Input description (``path, start_frame, n_frames, period_s, start_time_s,
        invalid_mask, is_isxd``).
    est : Estimates
        Model over the whole series, traces (K, T).
    event_threshold : float
        As for the event sets (noise units; 0 = every positive ``S``).

    Returns
    -------
    dict
        JSON-ready summary; times in seconds, rate in Hz.
    """
    s, n = int(file["start_frame"]), int(file["n_frames"])
    period = _num(file.get("period_s"))
    inv = file.get("invalid_mask")
    inv = np.zeros(n, bool) if inv is None else np.asarray(inv, bool)
    n_events = 0
    if est.S is not None and est.n_components:
        thr = 0.0
        if event_threshold and est.neurons_sn is not None:
            thr = event_threshold * np.asarray(est.neurons_sn, float)
        n_events = sum(len(f) for f in event_frames(est.S[:, s:s + n], threshold=thr,
                                                   valid=~inv))
    start = _num(file.get("start_time_s"))
    return {
        "index": k,
        "input": str(file.get("path")),
        "format": "isxd" if file.get("is_isxd") else Path(str(file.get("path"))).suffix.lstrip("."),
        "first_frame_in_series": s,
        "n_frames": n,
        "n_invalid_frames": int(inv.sum()),
        "period_s": period,
        "frame_rate_hz": None if not period else 1.0 / period,
        "start_time_s": start,
        "duration_s": None if period is None else n * period,
        "n_events": int(n_events),
        "outputs": output_names(k),
    }


def build_output_metadata(est: Estimates, files: list[dict], *, event_threshold: float = 0.0,
                          extra: dict | None = None) -> dict:
    """Return the ``output_metadata.json`` content as a dict (see :func:`write_output_metadata`)."""
    files = normalize_files(files)
    counts = cell_counts(est)
    summaries = [file_summary(k, f, est, event_threshold=event_threshold)
                 for k, f in enumerate(files)]
    per_output = {}
    for s in summaries:
        for kind, name in s["outputs"].items():
            per_output[Path(name).stem] = {
                "kind": kind, "input": s["input"], "n_samples": s["n_frames"],
                "sampling_rate_hz": s["frame_rate_hz"], "num_cells": counts["total"],
                "num_accepted_cells": counts["accepted"],
                "num_rejected_cells": counts["rejected"],
                **({"n_events": s["n_events"]} if kind == "events" else {}),
            }
    meta = {
        "counts": counts,
        "dims": [int(d) for d in est.dims],
        "n_frames": est.n_frames,
        "event_threshold": float(event_threshold),
        "files": summaries,
        "outputs": per_output,
    }
    if extra:
        meta.update(extra)
    return meta


def write_output_metadata(path: str | os.PathLike, est: Estimates, files: list[dict], *,
                          event_threshold: float = 0.0, extra: dict | None = None) -> dict:
    """Write ``output_metadata.json`` (atomically) and return its content.

    Parameters
    ----------
    path : str or PathLike
        Destination JSON file.
    est : Estimates
        Evaluated model over the series.
    files : list of dict
        Input file descriptions in the user's order.
    event_threshold : float
        Event threshold used for the event sets (noise units).
    extra : dict or None
        Additional top-level entries (e.g. resolved parameters, software version).

    Returns
    -------
    dict
        ``counts`` (accepted, rejected, undecided, total), ``dims``, ``n_frames``,
        ``files`` (per-file timing summary), ``outputs`` (per output file).
    """
    meta = build_output_metadata(est, files, event_threshold=event_threshold, extra=extra)
    tmp = temp_path(path)
    try:
        with open(tmp, "w") as fh:
            json.dump(meta, fh, indent=2)
            fh.write("\n")
        commit(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    return meta
