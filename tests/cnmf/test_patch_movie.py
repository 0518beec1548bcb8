"""Lazy patch readers: file == array, averaging == the in-memory definitions, residual."""

import numpy as np
import pytest
import scipy.sparse as sp

from cellextract.cnmf.background import downsample_operator, fit_ring_model
from cellextract.cnmf.init_corr_pnr import downsample_movie
from cellextract.cnmf.patch_movie import AveragedMovie, PatchReader, ResidualReader, time_average
from cellextract.cnmf.patches import Patch, patch_reader, read_patch_rows, rows_to_frames

DIMS, T = (30, 26), 41


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    rng = np.random.default_rng(0)
    Yr = (100 + rng.random((DIMS[0] * DIMS[1], T)) * 10).astype(np.float32)
    path = tmp_path_factory.mktemp("pm") / "m_d1_30_d2_26_d3_1_order_C_frames_41.mmap"
    Yr.tofile(path)
    patch = Patch(0, (4, 21), (3, 25), (4, 21), (3, 25))
    return Yr, str(path), patch


def test_file_and_array_readers_agree(movie):
    Yr, path, patch = movie
    a, b = patch_reader(Yr, DIMS, patch), patch_reader(path, DIMS, patch)
    assert a.shape == b.shape == patch.dims and a.T == b.T == T
    whole = read_patch_rows(Yr, DIMS, patch)
    np.testing.assert_array_equal(a.read_all(), whole)
    np.testing.assert_array_equal(b.read_all(), whole)
    np.testing.assert_array_equal(b.column(3, 2, 9), whole[3 * 17 + 2:3 * 17 + 9])
    np.testing.assert_array_equal(a.avg_rect(1, 8, 2, 5, 3), b.avg_rect(1, 8, 2, 5, 3))
    whole3 = b.avg_rect(1, 8, 2, 5, 3)
    parts = [b.avg_rect(1, 8, 2, 5, 3, t0, min(t0 + 4, 14)) for t0 in range(0, 14, 4)]
    np.testing.assert_array_equal(np.concatenate(parts, axis=2), whole3)   # frame chunks
    cols = [c for _, c in b.iter_avg_columns(2)]
    np.testing.assert_array_equal(np.concatenate(cols), time_average(whole, 2))


def test_time_and_space_averaging_match_downsample_movie(movie):
    Yr, _, patch = movie
    frames = rows_to_frames(read_patch_rows(Yr, DIMS, patch), patch.dims)
    for tsub, ssub in [(1, 1), (2, 1), (3, 2), (2, 3)]:
        ref = downsample_movie(frames, tsub, ssub)                  # (Td, hd, wd)
        m = AveragedMovie(patch_reader(Yr, DIMS, patch), tsub=tsub, ssub=ssub)
        assert m.shape == ref.shape[1:] and m.Td == ref.shape[0]
        got = np.stack([c for _, c in m.columns()], axis=1)        # (hd, wd, Td)
        np.testing.assert_allclose(got, ref.transpose(1, 2, 0), rtol=1e-6)
        rect = m.rect(1, m.shape[0], 2, m.shape[1])                 # (nc, nr, Td)
        np.testing.assert_allclose(rect.transpose(1, 0, 2), got[1:, 2:], rtol=1e-6)


def test_nonfinite_values_are_filled_consistently(movie):
    Yr, path, patch = movie
    Y = Yr.copy()
    Y[4 + 3 * 30:4 + 3 * 30 + 3] = np.nan            # first 3 pixels of the patch column 0
    r = PatchReader(Y, DIMS, patch.rows, patch.cols, pilot_frames=None)
    col = r.column(0)
    assert np.isfinite(col).all()
    fin = read_patch_rows(Y, DIMS, patch)
    assert col[0, 0] == pytest.approx(np.median(fin[np.isfinite(fin)]))


def test_residual_reader_matches_dense_residual():
    rng = np.random.default_rng(1)
    dims, T = (24, 22), 60
    yy, xx = np.mgrid[:dims[0], :dims[1]]
    A = np.stack([np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 6.0).ravel(order="F")
                  for r, c in [(5, 5), (12, 15), (20, 3)]], 1)
    A = sp.csc_matrix(np.where(A > 0.05, A, 0).astype(np.float32))
    C = rng.random((3, T)).astype(np.float32) * 5
    Y = (A @ C + 50 + rng.random((dims[0] * dims[1], T)) * 3).astype(np.float32)
    ring = fit_ring_model(downsample_operator(dims, 2) @ Y, A, C, mean_Y=Y.mean(1),
                          mean_C=C.mean(1), dims=dims, gSiz=5, ring_size_factor=1.4, ssub_B=2)
    R = Y - A @ C
    R = (R - ring.background(R)).astype(np.float32)
    rr = ResidualReader(PatchReader(Y, dims, pilot_frames=None), A, C, ring)
    for tsub in (1, 2):
        ref = time_average(R, tsub).reshape(dims[1], dims[0], -1)     # (cols, rows, Td)
        cols = np.stack([c for _, c in rr.iter_avg_columns(tsub)])
        np.testing.assert_allclose(cols, ref, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(rr.avg_rect(3, 11, 16, 22, tsub), ref[16:22, 3:11],
                                   rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(rr.avg_rect(3, 11, 16, 22, tsub, chunk_bytes=4e4),
                                   ref[16:22, 3:11], rtol=1e-4, atol=1e-3)
