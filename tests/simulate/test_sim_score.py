"""Scorer: perfect, dropped, extra, displaced components; traces; shift RMSE."""

import numpy as np
import pytest
import scipy.sparse as sp

from cellextract.errors import ParameterError
from cellextract.simulate import score, shift_rmse, simulate, write_truth

H, W = 64, 72


@pytest.fixture(scope="module")
def truth():
    return simulate(kind="2p", dims=(H, W), frames=300, n_neurons=20, seed=11).truth


def _shift_A(A, dy, dx):
    """Translate footprints (Fortran order) by integer (dy, dx)."""
    imgs = A.toarray().T.reshape(-1, W, H).transpose(0, 2, 1)
    moved = np.roll(imgs, (dy, dx), axis=(1, 2))
    return moved.transpose(0, 2, 1).reshape(len(imgs), -1).T


def test_perfect_match(truth, tmp_path):
    r = score(truth.A, (H, W), truth, C_found=truth.C, S_found=truth.S)
    assert r["TP"] == 20 and r["F1"] == 1.0 and r["precision"] == 1.0 and r["recall"] == 1.0
    assert r["matches"] == [[i, i] for i in range(20)]
    assert r["median_trace_corr"] == pytest.approx(1.0)
    assert r["median_spike_corr"] == pytest.approx(1.0)
    # the same from a file path, a dense A, and shuffled column order
    p = write_truth(tmp_path / "t.h5", truth)
    perm = np.random.default_rng(0).permutation(20)
    r2 = score(truth.A.toarray()[:, perm], (H, W), p, C_found=truth.C[perm])
    assert r2["F1"] == 1.0 and sorted(r2["matches"]) == sorted([[int(perm[j]), j] for j in range(20)])
    assert r2["median_trace_corr"] == pytest.approx(1.0)


def test_dropped_and_extra(truth):
    A = truth.A.toarray()
    r = score(A[:, :15], (H, W), truth)
    assert r["TP"] == 15 and r["recall"] == pytest.approx(0.75) and r["precision"] == 1.0
    assert r["missed"] == list(range(15, 20))
    assert r["F1"] == pytest.approx(2 * 0.75 / 1.75)
    # extras far from any neuron: spots in an empty corner region are false positives
    extra = np.zeros((H * W, 5), np.float32)
    for k in range(5):
        img = np.zeros((H, W), np.float32)
        img[2 + 3 * k, 2] = 1.0
        extra[:, k] = img.ravel(order="F")
    occupied = (A > 0).any(1)
    assert not occupied[extra.nonzero()[0]].all()
    r = score(np.hstack([A, extra]), (H, W), truth)
    assert r["n_found"] == 25 and r["FP"] == 5 and r["precision"] == pytest.approx(0.8)
    assert r["false_positives"] == list(range(20, 25))


def test_shifted_components(truth):
    # a 1 px displacement still matches, a 15 px one does not
    assert score(_shift_A(truth.A, 1, 0), (H, W), truth)["recall"] >= 0.9
    far = score(_shift_A(truth.A, 15, 15), (H, W), truth)
    assert far["recall"] <= 0.5 and not any(i == j for i, j in far["matches"])
    # alignment recovers a global offset
    r = score(_shift_A(truth.A, 3, -2), (H, W), truth, align=True)
    assert r["offset"] == pytest.approx([-3, 2], abs=0.6) and r["recall"] >= 0.9
    # a centroid gate of 0.5 px rejects 2 px displacements
    r = score(_shift_A(truth.A, 2, 0), (H, W), truth, max_dist=0.5)
    assert r["TP"] == 0


def test_degraded_traces(truth):
    rng = np.random.default_rng(1)
    noisy = truth.C + rng.normal(0, 3 * truth.C.std(), truth.C.shape)
    r = score(truth.A, (H, W), truth, C_found=noisy, S_found=np.roll(truth.S, 30, axis=1))
    assert r["median_trace_corr"] < 0.6
    assert r["median_spike_corr"] < 0.3
    # a one-frame lag barely hurts the smoothed spike agreement
    r = score(truth.A, (H, W), truth, S_found=np.roll(truth.S, 1, axis=1))
    assert r["median_spike_corr"] > 0.5


def test_empty_and_errors(truth):
    r = score(sp.csc_matrix((H * W, 0)), (H, W), truth)
    assert r["TP"] == 0 and r["F1"] == 0.0 and r["n_found"] == 0
    with pytest.raises(ParameterError):
        score(truth.A, (W, H), truth)
    with pytest.raises(ParameterError):
        score(truth.A, (H, W), truth, C_found=truth.C[:, :10])


def test_shift_rmse():
    rng = np.random.default_rng(0)
    true = rng.normal(0, 2, (100, 2))
    assert shift_rmse(true, true) == 0.0
    assert shift_rmse(true + [1.0, -2.0], true) == pytest.approx(0.0, abs=1e-12)
    assert shift_rmse(true + [1.0, -2.0], true, remove_offset=False) == pytest.approx(np.sqrt(5))
    err = rng.normal(0, 0.3, (100, 2))
    assert shift_rmse(true + err, true) == pytest.approx(np.sqrt(((err - err.mean(0)) ** 2).sum(1).mean()))
    field = rng.normal(0, 1, (10, 2, 3, 3))
    assert shift_rmse(field + 0.5, field) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ParameterError):
        shift_rmse(true, true[:5])


def test_recall_detectable_ignores_silent_and_dim(truth):
    import dataclasses

    S = truth.S.copy()
    S[:, 5] += 1.0                             # every neuron fires ...
    S[0] = 0                                   # ... except neuron 0
    snr = np.full(20, 10.0, np.float32)
    snr[1] = 0.5                               # neuron 1 is too dim
    t2 = dataclasses.replace(truth, S=S, snr=snr)
    keep = np.arange(2, 20)
    assert ((S[keep] > 0).sum(1) >= 1).all()
    r = score(truth.A.toarray()[:, keep], (H, W), t2)
    assert r["recall"] == pytest.approx(18 / 20)
    assert r["n_detectable"] == 18 and r["recall_detectable"] == 1.0
    r = score(truth.A.toarray()[:, keep[:9]], (H, W), t2)
    assert r["recall_detectable"] == pytest.approx(0.5)


def test_known_offset(truth):
    # a global sub-pixel offset: the found components sit at q - d, score(offset=d) undoes it
    moved = _shift_A(truth.A, -6, 4)
    assert score(moved, (H, W), truth)["recall"] < 0.5
    r = score(moved, (H, W), truth, offset=(6, -4))
    # (np.roll wraps neurons at the border around, those cannot come back)
    assert r["recall"] >= 0.85 and r["offset"] == [6.0, -4.0] and r["mean_iou"] > 0.9
    assert all(i == j for i, j in r["matches"])
    # one offset per component
    K = truth.A.shape[1]
    off = np.tile([6.0, -4.0], (K, 1))
    assert score(moved, (H, W), truth, offset=off)["recall"] == r["recall"]
    with pytest.raises(ParameterError):
        score(moved, (H, W), truth, offset=np.zeros((K + 1, 2)))
    with pytest.raises(ParameterError):
        score(moved, (H, W), truth, offset=(1, 1), align=True)


def test_translate_footprints_subpixel(truth):
    from cellextract.simulate.score import translate_footprints
    A = truth.A[:, :3]
    B = translate_footprints(translate_footprints(A, (H, W), (0.5, -0.5)), (H, W), (-0.5, 0.5))
    # two half-pixel bilinear moves blur but keep the mass centre
    def com(X):
        X = X.toarray()
        idx = np.arange(H * W)
        return np.stack([(idx % H) @ X, (idx // H) @ X]) / X.sum(0)
    assert np.allclose(com(B), com(A), atol=0.05)
    assert np.allclose(com(translate_footprints(A, (H, W), (1.25, 0.5))), com(A) + [[1.25], [0.5]], atol=0.1)


def test_template_offset():
    from cellextract.simulate.score import template_offset
    rng = np.random.default_rng(0)
    true = rng.normal(0, 2, (500, 2))
    est = true - [0.7, -1.2] + rng.normal(0, 0.05, (500, 2))
    assert template_offset(est, true) == pytest.approx([0.7, -1.2], abs=0.02)
    field = np.stack([true] * 3, -1)
    assert template_offset(field - 0.5, field).shape == (2, 3)
    with pytest.raises(ParameterError):
        template_offset(est[:, :1], true[:, :1])
