"""isxd cell sets and event sets: written, then read back with isx and compared."""

from pathlib import Path
from fractions import Fraction

import isx
import numpy as np
import pytest

from cellextract.errors import InputError
from cellextract.export.isxd import cell_names, event_frames, export_isxd
from cellextract.export.isxd_header import read_isxd_header, set_extra_properties
from cellextract.export.isxd_timing import sample_offsets_us, simplest_fraction

_SHARED = next((p for p in (Path(__file__).resolve().parents[2].parent / "shared",
                             Path("/work/shared")) if p.is_dir()), Path("/work/shared"))

REAL = str(_SHARED / "data/inscopix") + "/movie_part2_108x123x63.isxd"
DIMS = (12, 10)


def make_isxd_movie(path, n=20, start_s=1000):
    """Small isxd movie, 20 Hz, start 1000 s, frame 3 dropped, frames 7-8 cropped."""
    t = isx.Timing(num_samples=n, period=isx.Duration._from_num_den(1, 20),
                   start=isx.Time._from_secs_since_epoch(isx.Duration._from_num_den(start_s, 1)),
                   dropped=[3], cropped=[(7, 8)])
    m = isx.Movie.write(str(path), t, isx.Spacing(num_pixels=DIMS), np.float32)
    for i in t.get_valid_samples():
        m.set_frame_data(int(i), np.full(DIMS, float(i), np.float32))
    m.flush()
    del m
    set_extra_properties(path, {"idps": {"spatialDownsampling": 1, "temporalDownsampling": 1},
                                "custom": {"rig": "A"}})
    return str(path)


@pytest.fixture
def series(tmp_path, make_estimates):
    mov = make_isxd_movie(tmp_path / "in0.isxd")
    inv1 = np.zeros(15, bool)
    inv1[[4, 5]] = True
    files = [
        {"path": mov, "start_frame": 0, "n_frames": 20, "period_s": 0.05, "start_time_s": 1000.0,
         "invalid_mask": None, "is_isxd": True},
        {"path": "in1.tif", "start_frame": 20, "n_frames": 15, "period_s": 1 / 30,
         "start_time_s": None, "invalid_mask": inv1, "is_isxd": False},
        {"path": "in2.avi", "start_frame": 35, "n_frames": 12, "period_s": 1 / 29.97,
         "start_time_s": 12.5, "invalid_mask": None, "is_isxd": False},
    ]
    est = make_estimates(K=5, T=47, dims=DIMS)
    out = tmp_path / "out"
    paths = export_isxd(out, est, files)
    return est, files, paths, out


def test_file_names_and_no_temporaries(series):
    _, _, paths, out = series
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{kind}.{k:03d}.isxd" for k in range(3)
                           for kind in ("cellset_raw", "cellset_denoised", "neural_events"))
    assert paths[1]["raw"].name == "cellset_raw.001.isxd"


def test_cellsets_round_trip(series):
    est, files, paths, _ = series
    images = est.footprints_2d()
    statuses = ["accepted", "rejected", "accepted", "rejected", "accepted"]
    for k, f in enumerate(files):
        s, n = f["start_frame"], f["n_frames"]
        for kind, expect in (("raw", est.C + est.YrA), ("denoised", est.C)):
            cs = isx.CellSet.read(str(paths[k][kind]))
            assert cs.num_cells == 5
            assert cs.timing.num_samples == n
            assert cs.spacing.num_pixels == DIMS
            valid = cs.timing.get_valid_samples_mask()
            if k == 1:
                valid &= ~f["invalid_mask"]
            for c in range(5):
                assert cs.get_cell_name(c) == f"C{c:03d}"
                assert cs.get_cell_status(c) == statuses[c]
                tr = cs.get_cell_trace_data(c)
                assert tr.dtype == np.float32
                np.testing.assert_allclose(tr[valid], expect[c, s:s + n][valid], rtol=1e-6)
                assert np.all(np.isnan(tr[~valid]))
                np.testing.assert_allclose(cs.get_cell_image_data(c), images[c], rtol=1e-6)
            del cs


def test_timing_from_isxd_input(series):
    _, _, paths, _ = series
    cs = isx.CellSet.read(str(paths[0]["raw"]))
    src = isx.Movie.read(str(series[1][0]["path"]))
    assert cs.timing == src.timing
    assert cs.timing.dropped == [3] and cs.timing.cropped == [(7, 8)]
    assert cs.spacing == src.spacing
    tr = cs.get_cell_trace_data(0)
    assert np.isnan(tr[[3, 7, 8]]).all() and np.isfinite(np.delete(tr, [3, 7, 8])).all()
    hdr = read_isxd_header(paths[0]["raw"])
    assert hdr["extraProperties"]["custom"] == {"rig": "A"}
    assert hdr["extraProperties"]["idps"]["spatialDownsampling"] == 1
    assert hdr["extraProperties"]["idps"]["cellset"]["method"] == "caiman"
    assert cs.get_acquisition_info()["Trace Units"] == "a.u."


def test_exact_rational_period_for_tif_avi(series):
    _, _, paths, _ = series
    cs1 = isx.CellSet.read(str(paths[1]["denoised"]))  # keep alive: timing points into it
    t1 = cs1.timing
    assert (t1.period._impl.num, t1.period._impl.den) == (1, 30)
    assert t1.dropped == [4, 5]
    cs2 = isx.CellSet.read(str(paths[2]["denoised"]))
    t2 = cs2.timing
    assert Fraction(t2.period._impl.num, t2.period._impl.den) == Fraction(100, 2997)
    assert t2.start._impl.secs_since_epoch.num / t2.start._impl.secs_since_epoch.den == 12.5


def test_events_round_trip(series):
    est, files, paths, _ = series
    n_events = 0
    for k, f in enumerate(files):
        s, n = f["start_frame"], f["n_frames"]
        ev = isx.EventSet.read(str(paths[k]["events"]))
        assert ev.num_cells == 5
        cs = isx.CellSet.read(str(paths[k]["raw"]))
        valid = cs.timing.get_valid_samples_mask()
        if f["invalid_mask"] is not None:
            valid &= ~f["invalid_mask"]
        ref_off = np.array([d.to_usecs() for d in cs.timing.get_offsets_since_start()])
        for c in range(5):
            assert ev.get_cell_name(c) == f"C{c:03d}"
            off, amp = ev.get_cell_data(c)
            S = est.S[c, s:s + n]
            frames = np.flatnonzero((S > 0) & valid)
            np.testing.assert_array_equal(off, ref_off[frames])
            np.testing.assert_allclose(amp, S[frames], rtol=1e-6)
            n_events += len(off)
        del ev, cs
    assert n_events > 10


def test_event_threshold_in_noise_units(tmp_path, make_estimates):
    est = make_estimates(K=2, T=30, dims=DIMS)
    est.neurons_sn = np.array([1.0, 2.0])
    files = [{"path": "a.tif", "start_frame": 0, "n_frames": 30, "period_s": 0.1,
              "start_time_s": 0.0, "invalid_mask": None, "is_isxd": False}]
    paths = export_isxd(tmp_path, est, files, event_threshold=1.5)
    ev = isx.EventSet.read(str(paths[0]["events"]))
    for c, thr in enumerate([1.5, 3.0]):
        off, amp = ev.get_cell_data(c)
        frames = np.flatnonzero(est.S[c] > thr)
        np.testing.assert_array_equal(off, frames * 100000)
        assert np.all(amp > thr)


def test_real_isxd_input(tmp_path, make_estimates):
    est = make_estimates(K=2, T=63, dims=(123, 108))
    files = [{"path": REAL, "start_frame": 0, "n_frames": 63, "period_s": 0.1,
              "start_time_s": 30.1, "invalid_mask": None, "is_isxd": True}]
    paths = export_isxd(tmp_path, est, files)
    cs = isx.CellSet.read(str(paths[0]["raw"]))
    mv = isx.Movie.read(REAL)
    assert cs.timing == mv.timing and cs.spacing == mv.spacing
    assert cs.get_cell_image_data(1).shape == (123, 108)


def test_zero_and_one_cells(tmp_path, make_estimates):
    for K in (0, 1):
        est = make_estimates(K=K, T=10, dims=DIMS)
        files = [{"path": "a.tif", "start_frame": 0, "n_frames": 10, "period_s": 0.05,
                  "start_time_s": None, "invalid_mask": None, "is_isxd": False}]
        paths = export_isxd(tmp_path / str(K), est, files)
        assert isx.CellSet.read(str(paths[0]["denoised"])).num_cells == K
        assert isx.EventSet.read(str(paths[0]["events"])).num_cells == K


def test_frame_count_mismatch_is_an_input_error(tmp_path, make_estimates):
    est = make_estimates(K=1, T=10, dims=DIMS)
    files = [{"path": "a.tif", "start_frame": 0, "n_frames": 9, "period_s": 0.05,
              "start_time_s": None, "invalid_mask": None, "is_isxd": False}]
    with pytest.raises(InputError):
        export_isxd(tmp_path, est, files)
    assert list(tmp_path.iterdir()) == []


def test_helpers():
    assert cell_names(3) == ["C000", "C001", "C002"]
    assert cell_names(1001)[-1] == "C1000"
    assert simplest_fraction(1 / 30, tol=1e-12) == Fraction(1, 30)
    assert simplest_fraction(29.97, tol=1e-9) == Fraction(2997, 100)
    np.testing.assert_array_equal(sample_offsets_us(4, Fraction(1, 30)), [0, 33333, 66667, 100000])
    S = np.array([[0, 1, 0, 2.0], [0.5, 0, 0, 0]])
    fr = event_frames(S, threshold=np.array([1.0, 0.0]), valid=np.array([1, 1, 1, 0], bool))
    assert [f.tolist() for f in fr] == [[], [0]]


def test_series_info_file_table_rows_are_accepted(tmp_path, make_estimates):
    """Rows of cellextract.io SeriesInfo.file_table() drive the export (user order kept)."""
    from cellextract.io.series import load_series

    late = make_isxd_movie(tmp_path / "late.isxd", n=20, start_s=2000)
    early = make_isxd_movie(tmp_path / "early.isxd", n=16, start_s=1000)
    info = load_series([late, early])  # user order: late first; time order: early first
    rows = info.file_table()
    est = make_estimates(K=2, T=36, dims=DIMS)
    paths = export_isxd(tmp_path / "out", est, rows)
    for k, row in enumerate(rows):
        cs = isx.CellSet.read(str(paths[k]["denoised"]))
        assert cs.timing.num_samples == row["n_frames"] == (20, 16)[k]
        s = row["start_frame"]
        valid = cs.timing.get_valid_samples_mask()
        np.testing.assert_allclose(cs.get_cell_trace_data(1)[valid],
                                   est.C[1, s:s + row["n_frames"]][valid], rtol=1e-6)
        assert np.isnan(cs.get_cell_trace_data(1)[[3, 7, 8]]).all()
        del cs
