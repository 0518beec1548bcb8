"""Band-wise warping and writing (pass 2) and raw column reads."""

import os

import numpy as np
import pytest

from cellextract.io import open_movie
from cellextract.io.writers import write_tiff
from cellextract.motion.apply import apply_field, shift_cubic
from cellextract.motion.bands import (
    BAND_BYTES,
    BandContext,
    BandJob,
    plan_bands,
    process_band,
    warp_block,
)
from cellextract.motion.source import RawSource, raw_layout, scratch_layout


def _frame(H=40, W=52, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((H, W)) * 100 + 10).astype(np.float32)


def _band_rows(mov, ctx_kw, c0, c1, margin):
    """Frames of ``mov`` warped band by band with :func:`warp_block`, as ``(T, H, bw)``."""
    T, H, _W = mov.shape
    ctx = BandContext(RawSource(mov), **ctx_kw)
    rows = np.empty((T, (c1 - c0) * H), np.float32)
    st = warp_block(BandJob(c0, c1, T, margin, "copy", 0.0), ctx, rows, 0)
    assert st["sum"].shape == ((c1 - c0) * H,)
    return rows.reshape(T, c1 - c0, H).transpose(0, 2, 1)


@pytest.mark.parametrize("shift", [(0.3, -1.7), (-2.6, 2.2), (4.9, -4.9), (0.0, 0.5), (0.0, 0.0)])
@pytest.mark.parametrize("dtype", [np.float32, np.uint16])
def test_rigid_band_equals_whole_frame_warp(shift, dtype):
    f = _frame().astype(dtype)
    _H, _W = f.shape
    whole = shift_cubic(f.astype(np.float32), *shift)
    mov = f[None]
    kw = {"shifts": np.array([shift]), "frame_min": np.array([-1e9]), "frame_nan": np.zeros(1, bool)}
    for c0, c1 in [(0, 13), (13, 30), (30, 52), (0, 52)]:
        band = _band_rows(mov, kw, c0, c1, 8)[0]
        np.testing.assert_allclose(band, whole[:, c0:c1], rtol=1e-6, atol=1e-4)


def test_field_band_equals_whole_frame_remap():
    f = _frame(seed=1)
    H, W = f.shape
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    fy = (1.5 * np.sin(xx / 9) + 0.4).astype(np.float32)
    fx = (-1.2 * np.cos(yy / 7)).astype(np.float32)
    whole = apply_field(f, fy, fx, border_nan="copy")

    def field(t, c0, c1):  # one frame or a slice of frames
        if isinstance(t, slice):
            return fy[None, :, c0:c1], fx[None, :, c0:c1]
        return fy[:, c0:c1], fx[:, c0:c1]
    kw = {"shifts": np.zeros((1, 2)), "frame_min": np.array([-1e9]), "frame_nan": np.zeros(1, bool), "field": field}
    for c0, c1 in [(0, 20), (20, 52)]:
        band = _band_rows(f[None], kw, c0, c1, 6)[0]
        np.testing.assert_allclose(band, whole[:, c0:c1], rtol=1e-5, atol=1e-3)


def test_band_warp_floors_at_the_frame_minimum_and_keeps_nan():
    f = _frame(seed=2)
    f[10:14, 20:24] = 0.0  # a dark hole: bicubic undershoots below 0 around it
    g = f.copy()
    g[5, 5] = np.nan
    mov = np.stack([f, g])
    kw = {"shifts": np.array([[0.5, 0.5], [0.5, 0.5]]), "frame_min": np.array([0.0, 0.0]),
              "frame_nan": np.array([False, True])}
    out = _band_rows(mov, kw, 0, 52, 8)
    assert np.nanmin(out[0]) == 0.0 and np.isfinite(out[0]).all()
    assert np.isnan(out[1]).sum() > 0 and np.nanmin(out[1]) >= 0.0


def test_plan_bands_whole_movie_and_windows():
    p = plan_bands((512, 512), 3000)
    assert p.window == 3000 and p.bands[0][0] == 0 and p.bands[-1][1] == 512
    assert all(b > a for a, b in p.bands) and len(p.bands) >= 4
    long = plan_bands((512, 512), 30000, n_workers=2)
    assert long.window < 30000
    assert (long.bands[0][1] - long.bands[0][0]) * 512 * long.window * 4 <= BAND_BYTES
    tiny = plan_bands((8, 5), 10, n_workers=4)
    assert tiny.bands[0][0] == 0 and tiny.bands[-1][1] == 5


@pytest.mark.parametrize("window", [7, 25])
def test_process_band_writes_rows_in_fortran_order(tmp_path, window):
    rng = np.random.default_rng(3)
    T, H, W = 25, 12, 16
    mov = (rng.random((T, H, W)) * 50 + 5).astype(np.float32)
    shifts = rng.uniform(-2, 2, (T, 2))
    out = tmp_path / "m.bin"
    with open(out, "wb") as fh:
        fh.truncate(H * W * T * 4)
    fd = os.open(out, os.O_WRONLY)
    fmin = mov.reshape(T, -1).min(axis=1).astype(np.float64)
    for c0, c1 in [(0, 5), (5, 16)]:
        job = BandJob(c0, c1, window, 6, "copy", 1.5)
        r = process_band(job, RawSource(mov), fd, shifts=shifts, frame_min=fmin, frame_nan=np.zeros(T, bool))
        assert r["sum"].shape == (H, c1 - c0) and np.all(r["cnt"] == T)
    os.close(fd)
    Yr = np.fromfile(out, np.float32).reshape(H * W, T)
    for t in (0, 11, 24):
        expect = np.maximum(shift_cubic(mov[t], *shifts[t]), fmin[t]) + 1.5
        np.testing.assert_allclose(Yr[:, t], expect.ravel(order="F"), rtol=1e-5, atol=1e-3)


def test_raw_source_reads_tiff_in_place_and_scratch(tmp_path):
    rng = np.random.default_rng(4)
    mov = rng.integers(0, 4000, (9, 10, 14)).astype(np.uint16)
    path = tmp_path / "m.tif"
    write_tiff(path, mov, fr=10.0)
    with open_movie(path) as rd:
        lay = raw_layout(rd)
    assert lay is not None and lay.n_frames == 9
    got = RawSource(lay).read_cols(2, 7, 3, 11)
    np.testing.assert_array_equal(got, mov[2:7, :, 3:11].astype(np.float32))
    sc = tmp_path / "raw.bin"
    mov.astype(np.float32).tofile(sc)
    got = RawSource(scratch_layout(str(sc), (10, 14), 9)).read_cols(0, 9, 0, 14)
    np.testing.assert_array_equal(got, mov.astype(np.float32))


def test_raw_source_real_isxd_matches_reader():
    isxd = next((p for p in (os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                                          "inscopix", "movie_part2_108x123x63.isxd"),
                             "/work/shared/data/inscopix/movie_part2_108x123x63.isxd") if os.path.exists(p)), None)
    if isxd is None:
        pytest.skip("shared Inscopix data not available")
    with open_movie(isxd) as rd:
        lay = raw_layout(rd)
        ref = rd.read(0, rd.n_frames)
    assert lay is not None
    got = RawSource(lay).read_cols(0, lay.n_frames, 10, 60)
    np.testing.assert_array_equal(got, ref[:, :, 10:60])


@pytest.mark.parametrize("name", ["movie_part1_108x122x200.avi", "movie_part2_108x123x63.tiff"])
def test_motion_correct_false_reproduces_real_movies(tmp_path, name):
    """AVI (copied raw to a scratch file in pass 1) and TIFF (read in place): the memmap
    holds exactly the reader's frames when no registration is done."""
    from cellextract.io.memmap import frames_from_memmap, open_memmap
    from cellextract.motion.run import motion_correct
    path = next((p for p in (os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                                          "inscopix", name),
                             f"/work/shared/data/inscopix/{name}") if os.path.exists(p)), None)
    if path is None:
        pytest.skip("shared Inscopix data not available")
    with open_movie(path) as rd:
        ref = rd.read(0, rd.n_frames)
    r = motion_correct(path, tmp_path, "m", motion_correct=False, n_processes=2, chunk_frames=40)
    Yr, dims, T = open_memmap(r.mmap_path)
    np.testing.assert_array_equal(frames_from_memmap(Yr, dims, 0, T), ref + np.float32(r.offset))
    assert not list(tmp_path.glob("*.partial*"))


def test_vectorised_cubic_weights_match():
    from cellextract.motion.apply import cubic_weights
    from cellextract.motion.band_warps import cubic_weights_many
    t = np.linspace(0, 0.999, 37)
    np.testing.assert_allclose(cubic_weights_many(t), np.stack([cubic_weights(v) for v in t]), atol=1e-7)


def test_windowed_bands_give_the_same_memmap(tmp_path, monkeypatch):
    """A tiny band budget forces frame windows (row segments, window-major jobs): same
    memmap and mean image as whole-movie bands."""
    from cellextract.io.memmap import open_memmap
    from cellextract.motion import bands
    from cellextract.motion.run import load_motion_summary, motion_correct
    rng = np.random.default_rng(7)
    mov = (rng.random((90, 30, 40)) * 100 + 20).astype(np.float32)
    a = motion_correct(mov, tmp_path / "a", "m", max_shifts=(3, 3), n_processes=2, chunk_frames=30)
    monkeypatch.setattr(bands, "BAND_BYTES", 4 * 30 * 8 * 25)  # a few frames per window
    assert bands.plan_bands((30, 40), 90).window < 90
    b = motion_correct(mov, tmp_path / "b", "m", max_shifts=(3, 3), n_processes=2, chunk_frames=30)
    np.testing.assert_array_equal(np.asarray(open_memmap(a.mmap_path)[0]), np.asarray(open_memmap(b.mmap_path)[0]))
    np.testing.assert_allclose(load_motion_summary(tmp_path / "a")["mean_after"],
                               load_motion_summary(tmp_path / "b")["mean_after"], rtol=1e-5)


def test_plan_caps_the_window_for_page_cache():
    p = plan_bands((512, 512), 20000, max_window=6000)
    assert p.window <= 6000 and p.bands == plan_bands((512, 512), 6000).bands


def test_missing_and_nan_frames_stay_nan(tmp_path):
    """Frames not stored (dropped isxd frames: index -1) read as NaN; a NaN frame in the
    movie gives a NaN frame in the memmap and is left out of the mean image."""
    from cellextract.io.memmap import frames_from_memmap, open_memmap
    from cellextract.motion.run import load_motion_summary, motion_correct
    rng = np.random.default_rng(9)
    raw = (rng.random((6, 8, 10)) * 50).astype(np.uint16)
    f = tmp_path / "raw.bin"
    raw.tofile(f)
    from cellextract.motion.source import RawLayout
    lay = RawLayout(((str(f), 0, "<u2"),), (8, 10), np.zeros(7, np.int32), np.array([0, 1, -1, 2, 3, 4, 5]))
    src = RawSource(lay)
    frames = list(src.frames(0, 7))
    assert [i for i, fr in frames if fr is None] == [2]
    assert frames[3][1].dtype == np.uint16
    np.testing.assert_array_equal(frames[3][1][:, 3:7], raw[2, :, 3:7])
    del frames
    cols = src.read_cols(0, 7, 3, 7)
    assert np.isnan(cols[2]).all()
    np.testing.assert_array_equal(cols[3], raw[2, :, 3:7].astype(np.float32))
    mov = (rng.random((20, 24, 30)) * 100 + 10).astype(np.float32)
    mov[5] = np.nan
    r = motion_correct(mov, tmp_path / "m", "m", max_shifts=(3, 3), n_processes=2, chunk_frames=8)
    Yr, dims, T = open_memmap(r.mmap_path)
    frames = frames_from_memmap(Yr, dims, 0, T)
    assert np.isnan(frames[5]).all() and np.isfinite(np.delete(frames, 5, axis=0)).all()
    assert np.isfinite(load_motion_summary(tmp_path / "m")["mean_after"]).all()
