import numpy as np
import pytest
import scipy.sparse as sp

from cellextract.cnmf.patches import (combine_patches, in_core, local_to_full, map_patches,
                                      patch_grid, read_patch_rows, remove_duplicates,
                                      rows_to_frames)


def test_single_patch_when_rf_none_or_large():
    assert len(patch_grid((50, 60), rf=None, stride=10)) == 1
    p = patch_grid((50, 60), rf=40, stride=10)
    assert len(p) == 1 and p[0].rows == (0, 50) and p[0].cols == (0, 60)


@pytest.mark.parametrize("dims,rf,stride,border", [((100, 130), 20, 10, 0), ((97, 64), 15, 6, 3),
                                                   ((256, 256), 40, 20, 0)])
def test_grid_covers_fov_and_cores_tile_it(dims, rf, stride, border):
    H, W = dims
    ps = patch_grid(dims, rf=rf, stride=stride, border_pix=border)
    cover = np.zeros(dims, int)
    core = np.zeros(dims, int)
    for p in ps:
        assert p.dims[0] <= 2 * rf and p.dims[1] <= 2 * rf
        cover[p.rows[0]:p.rows[1], p.cols[0]:p.cols[1]] += 1
        core[p.core_rows[0]:p.core_rows[1], p.core_cols[0]:p.core_cols[1]] += 1
        assert p.rows[0] <= p.core_rows[0] and p.core_rows[1] <= p.rows[1]
    inner = (slice(border, H - border), slice(border, W - border))
    assert (cover[inner] >= 1).all() and (core[inner] == 1).all()
    if border:
        assert cover[:border].sum() == 0 and cover[:, W - border:].sum() == 0
    # neighbouring patches overlap by `stride` pixels (except the edge-aligned last one)
    rows = sorted({p.rows for p in ps})
    assert rows[0][1] - rows[1][0] == stride


def test_patch_reading_matches_frames():
    H, W, T = 30, 40, 7
    rng = np.random.default_rng(0)
    frames = rng.random((T, H, W)).astype(np.float32)
    Yr = np.ascontiguousarray(frames.transpose(2, 1, 0)).reshape(H * W, T)
    p = patch_grid((H, W), rf=8, stride=4)[5]
    Yp = read_patch_rows(Yr, (H, W), p)
    got = rows_to_frames(Yp, p.dims)
    assert np.array_equal(got, frames[:, p.rows[0]:p.rows[1], p.cols[0]:p.cols[1]])
    ps = patch_grid((H, W), rf=8, stride=4)
    out = map_patches(Yr, (H, W), ps, lambda r, pd: r.read_all())
    for o, q in zip(out, ps):
        assert np.array_equal(o, read_patch_rows(Yr, (H, W), q))


def _blob(dims, r, c):
    yy, xx = np.mgrid[:dims[0], :dims[1]]
    a = np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 8.0)
    a[a < 0.05] = 0
    return a


def test_combine_deletes_duplicates_in_overlaps():
    dims, T = (60, 60), 50
    patches = patch_grid(dims, rf=20, stride=10)
    assert len(patches) == 4
    rng = np.random.default_rng(1)
    c = rng.random((3, T)).astype(np.float32)
    # neuron 0 at (30, 12) seen by patches 0 and 2 (rows overlap 20..40); neuron 1 only in 3
    truth = [(31, 12), (50, 50), (10, 45)]
    parts = []
    for p in patches:
        cols, cs = [], []
        for k, (r, cc) in enumerate(truth):
            if p.rows[0] + 3 <= r < p.rows[1] - 3 and p.cols[0] + 3 <= cc < p.cols[1] - 3:
                img = _blob(dims, r, cc)[p.rows[0]:p.rows[1], p.cols[0]:p.cols[1]]
                cols.append(img.ravel(order="F"))
                cs.append(c[k])
        A = sp.csc_matrix(np.array(cols).T if cols else np.zeros((p.dims[0] * p.dims[1], 0)))
        parts.append((A, np.array(cs).reshape(-1, T)))
    n_raw = sum(a.shape[1] for a, _ in parts)
    assert n_raw > 3
    A, C = combine_patches(parts, patches, dims, del_duplicates=True, merge_thr=0.7)
    assert A.shape == (3600, 3) and C.shape == (3, T)
    full = np.stack([_blob(dims, r, cc).ravel(order="F") for r, cc in truth], 1)
    sim = (A.T @ full) / np.outer(np.linalg.norm(A.toarray(), axis=0), np.linalg.norm(full, axis=0))
    assert sorted(sim.argmax(1).tolist()) == [0, 1, 2]
    A2, C2 = combine_patches(parts, patches, dims, del_duplicates=False, merge_thr=0.7)
    assert A2.shape[1] == 3


def test_remove_duplicates_and_local_to_full():
    dims = (20, 20)
    a = _blob(dims, 10, 10).ravel(order="F")
    b = _blob(dims, 10, 11).ravel(order="F")
    far = _blob(dims, 3, 3).ravel(order="F")
    A = sp.csc_matrix(np.stack([a, b, far], 1))
    C = np.ones((3, 10)); C[1] *= 2
    assert remove_duplicates(A, C).tolist() == [1, 2]   # keeps the brighter duplicate
    p = patch_grid((40, 40), rf=10, stride=5)[3]
    Af = local_to_full(sp.csc_matrix(np.eye(p.dims[0] * p.dims[1])[:, :1]), p, (40, 40))
    assert Af.indices[0] == p.rows[0] + p.cols[0] * 40
    assert in_core(np.array([[p.core_rows[0], p.core_cols[0]]], float), p)[0]


def test_remove_duplicates_keeps_overlapping_cells_with_independent_traces():
    """Two somata a radius apart (cosine ~0.7) are distinct when their traces are
    independent, duplicates when the traces agree; near-identical footprints are
    duplicates whatever the traces."""
    yy, xx = np.mgrid[:30, :30]
    blob = lambda r, c: np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * 3.0 ** 2)).ravel(order="F")
    rng = np.random.default_rng(0)
    c1, c2 = np.abs(rng.normal(size=(2, 500)))
    A = sp.csc_matrix(np.stack([blob(15, 13), blob(15, 17)], axis=1))
    cos = (A.T @ A).toarray()[0, 1] / np.prod(sp.linalg.norm(A, axis=0))
    assert 0.6 < cos < 0.85
    assert remove_duplicates(A, np.stack([c1, c2]), thr=0.6).tolist() == [0]        # spatial rule
    assert remove_duplicates(A, np.stack([c1, c2]), thr=0.6, corr_thr=0.7).tolist() == [0, 1]
    assert remove_duplicates(A, np.stack([c1, 0.5 * c1]), thr=0.6, corr_thr=0.7).tolist() == [0]
    B = sp.csc_matrix(np.stack([blob(15, 15), blob(15, 15.5)], axis=1))
    assert remove_duplicates(B, np.stack([c1, c2]), thr=0.6, corr_thr=0.7).size == 1
