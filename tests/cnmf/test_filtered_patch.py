"""Streamed filtered-patch statistics and seed windows equal the whole-movie versions.

A window recomputed in one piece is bit-identical to the kept patch; in chunks of frames
the BLAS products may round differently (relative 1e-7)."""

import numpy as np
import pytest

from cellextract.cnmf.filtered_patch import filter_block, filtered_statistics, reflect_index
from cellextract.cnmf.seed_windows import FilteredStore
from cellextract.cnmf.filters import spatial_filter
from cellextract.cnmf.patch_movie import AveragedMovie, PatchReader
from cellextract.cnmf.summary import (_threshold, baseline_noise, neighbour_correlation,
                                      summary_kernel, to_pixel_major)


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(2)
    T, h, w = 90, 23, 19
    frames = (50 + rng.standard_normal((T, h, w)) * 2).astype(np.float32)
    frames[:, 8:12, 5:9] += 20 * (rng.random(T) < 0.1)[:, None, None]    # an active blob
    rows = np.ascontiguousarray(frames.transpose(2, 1, 0)).reshape(h * w, T)
    return frames, AveragedMovie(PatchReader(rows, (h, w), pilot_frames=None), tsub=1, ssub=1)


def test_reflect_index_is_opencv_reflect():
    assert [reflect_index(p, 5) for p in (-3, -1, 0, 4, 5, 7)] == [2, 0, 0, 4, 4, 2]
    assert reflect_index(-4, 2) == 0 and reflect_index(3, 1) == 0


@pytest.mark.parametrize("center", [True, False])
def test_filter_block_equals_frame_filter(small, center):
    frames, movie = small
    k = summary_kernel((2.0, 2.0), None, center_psf=center)
    ref = spatial_filter(frames, k).transpose(2, 1, 0)              # (cols, rows, T)
    Y = np.ascontiguousarray(frames.transpose(2, 1, 0))
    np.testing.assert_allclose(filter_block(Y, (0, 19), (0, 19), 19, k, t_chunk=40), ref,
                               rtol=1e-5, atol=1e-4)
    part = filter_block(Y[2:17], (2, 17), (7, 10), 19, k)            # interior columns
    np.testing.assert_allclose(part, ref[7:10], rtol=1e-5, atol=1e-4)
    edge = filter_block(Y[:8], (0, 8), (0, 2), 19, k)                 # reflected edge
    np.testing.assert_allclose(edge, ref[:2], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("max_bytes,keep", [(1e9, True), (1e9, False), (3e5, False), (1e5, True)])
def test_statistics_equal_whole_movie_definitions(small, max_bytes, keep):
    frames, movie = small
    k = summary_kernel((2.0, 2.0), None, center_psf=True)
    Fp = to_pixel_major(spatial_filter(frames, k))                    # (h, w, T)
    base, sigma = baseline_noise(Fp, pixel_major=True, noise_method="psd")
    Fp -= base[:, :, None]
    pnr = np.maximum(Fp.max(axis=2) / sigma, 0)
    cn = neighbour_correlation(_threshold(Fp.copy(), 0, sigma[:, :, None], 3.0), pixel_major=True)
    st = filtered_statistics(movie, k, noise_thr=3.0, max_bytes=max_bytes, keep=keep)
    np.testing.assert_allclose(st.base, base, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(st.sigma, sigma, rtol=1e-4)
    np.testing.assert_allclose(st.pnr, pnr, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(st.cn, cn, atol=2e-3)
    assert (st.F is not None) == keep
    if keep:
        np.testing.assert_allclose(st.F, Fp, rtol=1e-5, atol=1e-4)


def test_windows_recomputed_or_from_cached_tiles_follow_the_subtractions(small):
    """Kept patch, windows recomputed from the movie, windows copied from cached tiles:
    the same data before and after subtractions (recorded for the lazy stores)."""
    frames, movie = small
    k = summary_kernel((2.0, 2.0), None, center_psf=True)
    kept = FilteredStore(movie, k, filtered_statistics(movie, k, keep=True))
    lazy = FilteredStore(movie, k, filtered_statistics(movie, k, keep=False))
    tiled = FilteredStore(movie, k, filtered_statistics(movie, k, keep=False), tile=8)
    prio = np.zeros((23, 19)); prio[5, 5] = 1.0
    assert tiled.fill(prio, 4 * 8 * 8 * 90 * 4, margin=3) == 4
    np.testing.assert_array_equal(lazy._compute(0, 23, 0, 19, chunk_bytes=1e9), kept.window(0, 23, 0, 19))
    rng = np.random.default_rng(0)
    for r0, r1, c0, c1 in [(3, 15, 2, 12), (10, 23, 8, 19), (0, 23, 0, 19), (1, 14, 0, 13)]:
        Fk = kept.window(r0, r1, c0, c1)
        for store in (lazy, tiled):
            np.testing.assert_allclose(store.window(r0, r1, c0, c1), Fk, rtol=1e-5, atol=1e-4)
        rr, cc = np.nonzero(rng.random((r1 - r0, c1 - c0)) < 0.3)    # a subtraction
        coef = rng.random(rr.size).astype(np.float32)
        c = Fk[rr[0], cc[0]].copy()
        Fk[rr, cc] -= coef[:, None] * c[None, :]
        for store in (lazy, tiled):
            store.record(rr + r0, cc + c0, coef, c)
    for store in (lazy, tiled):
        np.testing.assert_allclose(store.window(0, 23, 0, 19), kept.window(0, 23, 0, 19),
                                   rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(tiled.window(2, 14, 1, 15), kept.window(2, 14, 1, 15),
                               rtol=1e-5, atol=1e-4)
    assert tiled.n_cached >= 2 and kept.n_computed == 0 and lazy.n_cached == 0
