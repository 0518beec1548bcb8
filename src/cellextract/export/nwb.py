"""Optional NWB export (``cells.nwb``) of the cell extraction results with pynwb.

Contents: a device and imaging plane; ``processing/ophys`` with an ``ImageSegmentation``
(one ``PlaneSegmentation`` with a sparse pixel mask (x = column, y = row, weight) per
component, with columns
``cell_name``, ``accepted``, ``snr``, ``r_value``), a ``Fluorescence`` container with the
``RoiResponseSeries`` ``RawTraces`` (``C + YrA``) and ``DenoisedTraces`` (``C``), a
``Fluorescence`` container ``Deconvolved`` with ``DeconvolvedActivity`` (``S``), and the
correlation image (``SummaryImages``). Traces are (T, K) as NWB requires, NaN at
invalid frames.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone

import numpy as np
from pynwb import NWBHDF5IO, NWBFile
from pynwb.base import Images
from pynwb.file import Subject
from pynwb.image import GrayscaleImage
from pynwb.ophys import (Fluorescence, ImageSegmentation, OpticalChannel, PlaneSegmentation,
                         RoiResponseSeries)

from cellextract.cnmf.estimates import Estimates
from cellextract.export._atomic import commit, remove_quietly, temp_path
from cellextract.export.footprints import FootprintImages
from cellextract.export.isxd import cell_names, cell_statuses
from cellextract.log import get_logger

__all__ = ["build_nwbfile", "write_nwb"]

log = get_logger(__name__)


#: Placeholder subject (the input movies carry no subject metadata); override with ``subject``.
#: ``age="P0D/"`` is the ISO 8601 open range "0 days or older", i.e. unknown age.
_SUBJECT = {"subject_id": "unknown", "sex": "U", "age": "P0D/",
            "description": "subject metadata are not recorded in the input movies"}


def _imaging_plane(nwb: NWBFile, *, fr: float, dxy, indicator: str, location: str,
                   excitation_lambda: float):
    device = nwb.create_device(name="Microscope", description="imaging device of the input movie")
    channel = OpticalChannel(name="OpticalChannel", description="fluorescence channel",
                             emission_lambda=np.nan)
    kw = {}
    if dxy is not None:
        kw = {"grid_spacing": [float(dxy[0]), float(dxy[1])], "grid_spacing_unit": "micrometers"}
    return nwb.create_imaging_plane(
        name="ImagingPlane", optical_channel=channel, device=device,
        description="field of view of the motion-corrected movie",
        excitation_lambda=excitation_lambda,
        imaging_rate=float(fr), indicator=indicator, location=location, **kw)


_DOC = {"cell_name": "cell name as in the isxd cell sets",
        "accepted": "accepted by component evaluation",
        "snr": "trace signal-to-noise ratio (NaN if not evaluated)",
        "r_value": "spatial correlation with the data (NaN if not evaluated)"}


def _plane_segmentation(est: Estimates, plane) -> PlaneSegmentation:
    ps = PlaneSegmentation(name="PlaneSegmentation", imaging_plane=plane,
                           description="CNMF spatial footprints (unit L2 norm) as pixel "
                                       "masks (x = column, y = row, weight)")
    for col, doc in _DOC.items():
        ps.add_column(col, doc)
    imgs = FootprintImages(est.A, est.dims)
    names, statuses = cell_names(est.n_components), cell_statuses(est)
    snr = est.SNR_comp if est.SNR_comp is not None else np.full(est.n_components, np.nan)
    rv = est.r_values if est.r_values is not None else np.full(est.n_components, np.nan)
    for k in range(est.n_components):
        rows, cols, w = imgs.support(k)
        mask = [(int(x), int(y), float(v)) for y, x, v in zip(rows, cols, w)]
        ps.add_roi(pixel_mask=mask, cell_name=names[k], accepted=statuses[k] == "accepted",
                   snr=float(snr[k]), r_value=float(rv[k]))
    return ps


def _series(name, data, region, *, fr, unit, description):
    return RoiResponseSeries(name=name, data=np.ascontiguousarray(data.T, dtype=np.float32),
                             rois=region, unit=unit, rate=float(fr), starting_time=0.0,
                             description=description)


def _traces(est: Estimates, invalid):
    C = np.array(est.C, dtype=np.float32)
    raw = C + (np.asarray(est.YrA, np.float32) if est.YrA is not None else 0)
    S = np.array(est.S if est.S is not None else np.zeros_like(C), dtype=np.float32)
    if invalid is not None:
        for x in (C, raw, S):
            x[:, np.asarray(invalid, bool)] = np.nan
    return raw, C, S


def build_nwbfile(est: Estimates, *, fr: float, dims: tuple[int, int], dxy=None,
                  session_start_time: datetime | None = None, invalid: np.ndarray | None = None,
                  session_description: str = "calcium imaging cell extraction (CNMF/CNMF-E)",
                  indicator: str = "unknown", location: str = "unknown",
                  excitation_lambda: float = np.nan, identifier: str | None = None,
                  subject: dict | None = None,
                  experiment_description: str = "cell extraction with cellextract") -> NWBFile:
    """Build the in-memory ``NWBFile`` (see :func:`write_nwb` for the parameters)."""
    if tuple(dims) != tuple(est.dims):
        raise ValueError(f"dims {tuple(dims)} differ from the model's {tuple(est.dims)}")
    start = session_start_time or datetime.now(timezone.utc)
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    nwb = NWBFile(session_description=session_description,
                  identifier=identifier or str(uuid.uuid4()), session_start_time=start,
                  source_script="cellextract", source_script_file_name="cellextract.export.nwb",
                  subject=Subject(**{**_SUBJECT, **(subject or {})}),
                  keywords=["calcium imaging", "CNMF", "CaImAn", "cell extraction"],
                  experiment_description=experiment_description)
    plane = _imaging_plane(nwb, fr=fr, dxy=dxy, indicator=indicator, location=location,
                           excitation_lambda=excitation_lambda)
    ophys = nwb.create_processing_module(name="ophys", description="cell extraction results")
    if est.Cn is not None:
        ophys.add(Images(name="SummaryImages", description="summary images of the movie",
                         images=[GrayscaleImage(name="correlation", data=np.asarray(est.Cn, float),
                                                description="local correlation image")]))
    if est.n_components == 0:  # no cells: no segmentation table (empty tables are invalid)
        return nwb
    seg = ImageSegmentation(name="ImageSegmentation")
    ps = _plane_segmentation(est, plane)
    seg.add_plane_segmentation(ps)
    ophys.add(seg)
    region = ps.create_roi_table_region(region=list(range(est.n_components)),
                                        description="all components")
    raw, den, S = _traces(est, invalid)
    fl = Fluorescence(name="Fluorescence")
    dec = Fluorescence(name="Deconvolved")
    ophys.add(fl)  # parents first, so the series share an ancestor with their ROI table
    ophys.add(dec)
    fl.add_roi_response_series(_series("RawTraces", raw, region, fr=fr, unit="a.u.",
                                       description="raw traces C + YrA"))
    fl.add_roi_response_series(_series("DenoisedTraces", den, region, fr=fr, unit="a.u.",
                                       description="denoised traces C"))
    dec.add_roi_response_series(_series("DeconvolvedActivity", S, region, fr=fr, unit="a.u.",
                                        description="deconvolved activity S (OASIS)"))
    return nwb


def write_nwb(path: str | os.PathLike, est: Estimates, *, fr: float, dims: tuple[int, int],
              dxy=None, session_start_time: datetime | None = None,
              invalid: np.ndarray | None = None, **kwargs) -> None:
    """Write the model to an NWB file (atomically).

    Parameters
    ----------
    path : str or PathLike
        Output ``.nwb`` file.
    est : Estimates
        Evaluated model: ``A`` (H*W, K), ``C``, ``YrA``, ``S`` (K, T).
    fr : float
        Frame rate (Hz) of the concatenated series.
    dims : tuple of int
        ``(H, W)``; must equal ``est.dims``.
    dxy : pair of float or None
        Pixel size (micrometers) recorded as the imaging plane's grid spacing.
    session_start_time : datetime or None
        Start of the recording (UTC assumed when naive); now when None.
    invalid : ndarray of bool, shape (T,), optional
        Frames without data (NaN in the traces).
    **kwargs
        ``session_description, indicator, location, excitation_lambda, identifier,
        subject`` (dict of ``pynwb.file.Subject`` fields), ``experiment_description``.
    """
    nwb = build_nwbfile(est, fr=fr, dims=dims, dxy=dxy, session_start_time=session_start_time,
                        invalid=invalid, **kwargs)
    tmp = temp_path(path)
    remove_quietly(tmp)
    try:
        with NWBHDF5IO(str(tmp), mode="w") as io:
            io.write(nwb)
        commit(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    log.info("wrote NWB file %s (%d components)", path, est.n_components)
