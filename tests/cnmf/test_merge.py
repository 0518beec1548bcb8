import numpy as np
import scipy.sparse as sp

from cellextract.cnmf.merge import find_merge_groups, merge_components


def _img(dims, r, c, sig=2.0):
    yy, xx = np.mgrid[:dims[0], :dims[1]]
    a = np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * sig ** 2)).ravel(order="F")
    a[a < 0.05] = 0
    return a


def test_merges_split_neuron_not_distinct_neighbours():
    dims, T = (30, 30), 600
    rng = np.random.default_rng(0)
    full = _img(dims, 10, 10)
    col = np.arange(900) // 30
    half1 = full * (col <= 10)                       # two overlapping pieces of one neuron
    half2 = full * (col >= 10)
    c = np.convolve((rng.random(T) < 0.05).astype(float), 0.9 ** np.arange(30))[:T]
    c_other = np.convolve((rng.random(T) < 0.05).astype(float), 0.9 ** np.arange(30))[:T]
    neighbour = _img(dims, 12, 14)                  # overlaps the neuron, own activity
    A = sp.csc_matrix(np.stack([half1, half2, neighbour], 1))
    C = np.stack([c + 0.01 * rng.standard_normal(T), c + 0.01 * rng.standard_normal(T),
                  c_other])
    groups = find_merge_groups(A, C, merge_thr=0.7)
    assert [g.tolist() for g in groups] == [[0, 1]]
    A2, C2, _ = merge_components(A, C, merge_thr=0.7)
    assert A2.shape[1] == 2
    a = A2[:, 1].toarray().ravel()
    assert np.corrcoef(a, full)[0, 1] > 0.9
    assert np.isclose(np.linalg.norm(a), 1, atol=1e-4)
    assert np.corrcoef(C2[1], c)[0, 1] > 0.99
    assert np.allclose(A2[:, 0].toarray().ravel(), neighbour)


def test_no_merge_without_overlap():
    dims, T = (30, 30), 300
    c = np.abs(np.random.default_rng(1).standard_normal(T))
    A = sp.csc_matrix(np.stack([_img(dims, 5, 5), _img(dims, 25, 25)], 1))
    assert find_merge_groups(A, np.stack([c, c]), merge_thr=0.7) == []


def test_near_identical_footprints_merge_by_cosine():
    dims, T = (30, 30), 400
    rng = np.random.default_rng(2)
    a = _img(dims, 15, 15)
    c = np.convolve((rng.random(T) < 0.05).astype(float), 0.9 ** np.arange(30))[:T]
    # one neuron's activity split between two copies of its footprint (anti-correlated)
    split = rng.random(T)
    A = sp.csc_matrix(np.stack([a, _img(dims, 15.3, 15), _img(dims, 3, 3)], 1))
    C = np.stack([c * split, c * (1 - split), c])
    assert find_merge_groups(A, C, merge_thr=0.99) == []   # traces alone do not qualify
    groups = find_merge_groups(A, C, merge_thr=0.99, cos_thr=0.85)
    assert [g.tolist() for g in groups] == [[0, 1]]
    A2, C2, _ = merge_components(A, C, merge_thr=0.99, cos_thr=0.85)
    assert A2.shape[1] == 2 and np.corrcoef(C2[1], c)[0, 1] > 0.99


def test_split_neuron_with_anticorrelated_traces_merges():
    dims, T = (30, 30), 400
    rng = np.random.default_rng(3)
    c = np.convolve((rng.random(T) < 0.05).astype(float), 0.9 ** np.arange(30))[:T]
    half = (rng.random(T) < 0.5).astype(float)
    A = sp.csc_matrix(np.stack([_img(dims, 15, 14), _img(dims, 15, 16.5)], 1))
    nrm = np.linalg.norm(A.toarray(), axis=0)
    cos = (A.T @ A).toarray()[0, 1] / nrm.prod()
    assert 0.6 < cos < 0.85
    C = np.stack([c * half, c * (1 - half)])
    assert np.corrcoef(C)[0, 1] < -0.2
    assert find_merge_groups(A, C, merge_thr=0.7, cos_thr=0.85) == []
    groups = find_merge_groups(A, C, merge_thr=0.7, cos_thr=0.85, split_corr=-0.2)
    assert [g.tolist() for g in groups] == [[0, 1]]


def test_chunked_correlation_equals_direct():
    from cellextract.cnmf.merge import cross_correlation, trace_correlation
    rng = np.random.default_rng(0)
    C = rng.random((20, 700)).astype(np.float32)
    C[3] = 2.0                                          # constant row: correlation 0
    X = C.astype(np.float64) - C.mean(1, keepdims=True)
    n = np.linalg.norm(X, axis=1)
    n[n == 0] = np.inf
    X /= n[:, None]
    np.testing.assert_allclose(trace_correlation(C), X @ X.T, atol=1e-12)
    np.testing.assert_allclose(cross_correlation(C[:5], C[5:], chunk=64), (X @ X.T)[:5, 5:],
                               atol=1e-12)
