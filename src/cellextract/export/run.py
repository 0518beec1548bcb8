"""One call for the ``export`` step: isxd cell/event sets, metadata and optional NWB.

The CaImAn HDF5 (``caiman_output.hdf5``) is written by the evaluation step with
:func:`cellextract.export.caiman_hdf5.save_estimates`; this step reads it back with
:func:`~cellextract.export.caiman_hdf5.load_estimates` and writes the per-file outputs.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from cellextract.cnmf.estimates import Estimates
from cellextract.export.isxd import export_isxd
from cellextract.export.isxd_timing import normalize_files
from cellextract.export.metadata import write_output_metadata
from cellextract.log import get_logger

__all__ = ["series_invalid_mask", "export_series"]

log = get_logger(__name__)


def series_invalid_mask(files: list[dict], T: int) -> np.ndarray:
    """Invalid frames of the concatenated series, shape (T,), from the per-file masks."""
    inv = np.zeros(T, dtype=bool)
    for f in normalize_files(files):
        m = f.get("invalid_mask")
        if m is not None:
            s = int(f["start_frame"])
            inv[s:s + int(f["n_frames"])] = np.asarray(m, bool)
    return inv


def export_series(out_dir: str | os.PathLike, est: Estimates, files: list[dict], *,
                  event_threshold: float = 0.0, nwb_path: str | os.PathLike | None = None,
                  fr: float | None = None, dxy=None, metadata_extra: dict | None = None) -> dict:
    """Write ``cellset_raw/denoised.NNN.isxd``, ``neural_events.NNN.isxd``,
    ``output_metadata.json`` and, when ``nwb_path`` is given, the NWB file.

    Parameters
    ----------
    out_dir : str or PathLike
        Directory of the isxd files and ``output_metadata.json``.
    est : Estimates
        Evaluated model over the series, traces (K, T).
    files : list of dict
        Input files in the user's order (see :mod:`cellextract.export.isxd_timing`).
    event_threshold : float
        Events where ``S > event_threshold * neurons_sn`` (0 = every positive ``S``).
    nwb_path : str, PathLike or None
        Where to write the NWB file; None skips it.
    fr : float or None
        Series frame rate (Hz) for the NWB file (default: from the first file's period).
    dxy : pair of float or None
        Pixel size in micrometers (NWB grid spacing).
    metadata_extra : dict or None
        Extra top-level entries of ``output_metadata.json``.

    Returns
    -------
    dict
        ``{'isxd': [per-file dict of paths], 'metadata': Path, 'nwb': Path or None}``.
    """
    files = normalize_files(files)
    out = Path(out_dir)
    paths = export_isxd(out, est, files, event_threshold=event_threshold)
    meta_path = out / "output_metadata.json"
    write_output_metadata(meta_path, est, files, event_threshold=event_threshold,
                          extra=metadata_extra)
    nwb = None
    if nwb_path is not None:
        from cellextract.export.nwb import write_nwb  # pynwb only when asked for

        rate = fr if fr else 1.0 / float(files[0]["period_s"])
        t0 = files[0].get("start_time_s")
        start = datetime.fromtimestamp(float(t0), tz=timezone.utc) if t0 else None
        write_nwb(nwb_path, est, fr=rate, dims=est.dims, dxy=dxy, session_start_time=start,
                  invalid=series_invalid_mask(files, est.n_frames))
        nwb = Path(nwb_path)
    log.info("exported %d files: %d cells", len(files), est.n_components)
    return {"isxd": paths, "metadata": meta_path, "nwb": nwb}
