"""NWB export: validates with nwbinspector (no CRITICAL or ERROR) and reads back."""

from datetime import datetime, timezone

import numpy as np
import pytest
from nwbinspector import inspect_nwbfile
from pynwb import NWBHDF5IO

from cellextract.export.nwb import write_nwb

START = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def serious(path):
    return [m for m in inspect_nwbfile(str(path))
            if m.importance.name in ("CRITICAL", "ERROR", "PYNWB_VALIDATION")]


@pytest.mark.parametrize("K", [0, 1, 6])
def test_validates(tmp_path, make_estimates, K):
    est = make_estimates(K=K, T=50, dims=(12, 10))
    path = tmp_path / "cells.nwb"
    write_nwb(path, est, fr=10.0, dims=(12, 10), dxy=(1.5, 1.5), session_start_time=START)
    assert serious(path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["cells.nwb"]


def test_subject_metadata_silences_subject_checks(tmp_path, make_estimates):
    est = make_estimates(K=2, T=40, dims=(12, 10))
    path = tmp_path / "c.nwb"
    write_nwb(path, est, fr=10.0, dims=(12, 10), session_start_time=START,
              subject={"subject_id": "m1", "species": "Mus musculus", "age": "P90D", "sex": "M"})
    names = {m.check_function_name for m in inspect_nwbfile(str(path))}
    assert not any("subject" in n for n in names)


def test_read_back(tmp_path, make_estimates):
    est = make_estimates(K=4, T=50, dims=(12, 10))
    invalid = np.zeros(50, bool)
    invalid[[7, 8]] = True
    path = tmp_path / "cells.nwb"
    write_nwb(path, est, fr=20.0, dims=(12, 10), invalid=invalid, session_start_time=START)
    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        ophys = nwb.processing["ophys"]
        ps = ophys["ImageSegmentation"]["PlaneSegmentation"]
        masks = np.zeros((4, 12, 10))
        for k in range(4):
            for x, y, w in ps["pixel_mask"][k]:
                masks[k, y, x] = w
        np.testing.assert_allclose(masks, est.footprints_2d(), rtol=1e-6)
        assert list(ps["cell_name"][:]) == ["C000", "C001", "C002", "C003"]
        assert list(ps["accepted"][:]) == [True, False, True, False]
        raw = ophys["Fluorescence"]["RawTraces"]
        den = ophys["Fluorescence"]["DenoisedTraces"]
        dec = ophys["Deconvolved"]["DeconvolvedActivity"]
        assert raw.rate == 20.0 and raw.data.shape == (50, 4)
        valid = ~invalid
        np.testing.assert_allclose(raw.data[:][valid], (est.C + est.YrA).T[valid], rtol=1e-6)
        np.testing.assert_allclose(den.data[:][valid], est.C.T[valid], rtol=1e-6)
        np.testing.assert_allclose(dec.data[:][valid], est.S.T[valid], rtol=1e-6)
        assert np.isnan(den.data[:][invalid]).all()
        np.testing.assert_allclose(ophys["SummaryImages"]["correlation"].data[:], est.Cn)
        assert nwb.session_start_time == START


def test_dims_mismatch(tmp_path, make_estimates):
    with pytest.raises(ValueError):
        write_nwb(tmp_path / "x.nwb", make_estimates(K=1, T=5), fr=10.0, dims=(5, 5))
