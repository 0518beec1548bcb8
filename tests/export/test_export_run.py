"""export_series: all outputs of the export step in one call."""

import json

import isx
import numpy as np
from pynwb import NWBHDF5IO

from cellextract.export.run import export_series, series_invalid_mask


def test_export_series_writes_everything(tmp_path, make_estimates):
    est = make_estimates(K=3, T=30, dims=(12, 10))
    inv = np.zeros(12, bool)
    inv[0] = True
    files = [
        {"path": "a.tif", "start_frame": 0, "n_frames": 18, "period_s": 0.05,
         "start_time_s": 1.7e9, "invalid_mask": None, "is_isxd": False},
        {"path": "b.tif", "start_frame": 18, "n_frames": 12, "period_s": 0.05,
         "start_time_s": 1.7e9 + 60, "invalid_mask": inv, "is_isxd": False},
    ]
    res = export_series(tmp_path, est, files, nwb_path=tmp_path / "cells.nwb", dxy=(2.0, 2.0),
                        metadata_extra={"software": {"name": "cellextract"}})
    assert len(res["isxd"]) == 2
    assert isx.CellSet.read(str(res["isxd"][1]["raw"])).timing.num_samples == 12
    meta = json.loads(res["metadata"].read_text())
    assert meta["counts"]["total"] == 3 and meta["files"][1]["n_invalid_frames"] == 1
    with NWBHDF5IO(str(res["nwb"]), "r") as io:
        nwb = io.read()
        den = nwb.processing["ophys"]["Fluorescence"]["DenoisedTraces"]
        assert den.rate == 20.0 and den.data.shape == (30, 3)
        assert np.isnan(den.data[18]).all() and not np.isnan(den.data[17]).any()
        assert nwb.session_start_time.year >= 2023


def test_series_invalid_mask():
    files = [{"start_frame": 0, "n_frames": 3, "invalid_mask": None},
             {"start_frame": 3, "n_frames": 2, "invalid_mask": np.array([False, True])}]
    np.testing.assert_array_equal(series_invalid_mask(files, 5), [0, 0, 0, 0, 1])
