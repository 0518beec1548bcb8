"""End-to-end 2P CNMF fits (greedy_roi / sparse_nmf, low-rank background) on small
movies from the project's 2P simulator."""

import numpy as np
import pytest
import scipy.sparse as sp

from cellextract.cnmf.fit import fit_cnmf_array
from cellextract.errors import ParameterError
from cellextract.evaluate import evaluate_components
from cellextract.io.memmap import frames_to_columns
from cellextract.simulate import simulate
from cellextract.simulate.score import binary_masks, mask_iou, score

DIMS, T, N = (64, 64), 600, 10
KW = dict(method_init="greedy_roi", gSig=(4, 4), gSiz=(9, 9), tsub=2, nb=2, nb_patch=1,
          normalize_init=True, center_psf=False, bas_nonneg=True, rolling_sum=True,
          merge_thr=0.7, rf=None)


@pytest.fixture(scope="module")
def movie():
    sim = simulate(kind="2p", dims=DIMS, frames=T, n_neurons=N, seed=3)
    return sim, frames_to_columns(sim.frames())


@pytest.fixture(scope="module")
def whole_fov_fit(movie):
    sim, Yr = movie
    tr = sim.truth
    return fit_cnmf_array(Yr, DIMS, K=N + 3, fr=tr.fr, decay_time=tr.decay_time, **KW)


def _f1(est, sim):
    return score(est.A, DIMS, sim.truth, C_found=est.C)


def test_greedy_whole_fov_accuracy_and_lowrank_background(movie, whole_fov_fit):
    sim, _ = movie
    est = whole_fov_fit
    s = _f1(est, sim)
    assert s["recall"] >= 0.9, s
    assert s["F1"] >= 0.8, s
    assert s["median_trace_corr"] >= 0.9, s
    P = DIMS[0] * DIMS[1]
    assert est.b.shape == (P, 2) and est.f.shape == (2, T)
    assert est.b0 is None and est.W is None


@pytest.mark.parametrize("nb", [1, 3])
def test_background_rank_follows_nb(movie, nb):
    sim, Yr = movie
    tr = sim.truth
    est = fit_cnmf_array(Yr, DIMS, **dict(KW, nb=nb, K=N + 3, fr=tr.fr,
                                          decay_time=tr.decay_time, n_rounds=1))
    assert est.b.shape == (DIMS[0] * DIMS[1], nb) and est.f.shape == (nb, T)
    assert np.isfinite(est.b).all() and np.isfinite(est.f).all()


def test_patches_merge_without_duplicates(movie, whole_fov_fit):
    """Overlapping patches (del_duplicates False) see the same neurons twice; merging
    leaves one component per neuron and keeps the accuracy of the whole-FOV fit."""
    sim, Yr = movie
    tr = sim.truth
    est = fit_cnmf_array(Yr, DIMS, **dict(KW, rf=16, stride=8, K=5, del_duplicates=False,
                                          fr=tr.fr, decay_time=tr.decay_time))
    assert _f1(est, sim)["recall"] >= 0.9
    # after CaImAn's evaluation (SNR, r-values, CNN) the junk of K-per-patch is rejected
    ev = evaluate_components(est, Yr, fr=tr.fr, decay_time=tr.decay_time, min_SNR=3.0,
                             SNR_lowest=0.5, rval_thr=0.85, rval_lowest=-1.0, use_cnn=True,
                             min_cnn_thr=0.9, cnn_lowest=0.1, gSig=(4, 4))
    good = ev.idx_components
    s = score(est.A[:, good], DIMS, tr, C_found=est.C[good])
    assert s["F1"] >= 0.85 and s["recall"] >= 0.9, s
    # no true neuron is the best match of two accepted components (mask IoU >= 0.3)
    iou = np.asarray(mask_iou(binary_masks(tr.A, frac=0.25),
                              binary_masks(est.A[:, good], frac=0.25)))
    best = iou.argmax(axis=0)[iou.max(axis=0) >= 0.3]
    assert len(set(best.tolist())) == len(best), iou.round(2)
    # no two found footprints are near-identical
    A = sp.csc_matrix(est.A)
    cos = (A.T @ A).toarray()
    np.fill_diagonal(cos, 0)
    assert cos.max() < 0.85


def test_refit_keeps_or_improves_f1(movie, whole_fov_fit):
    sim, Yr = movie
    tr = sim.truth
    est = fit_cnmf_array(Yr, DIMS, K=N + 3, fr=tr.fr, decay_time=tr.decay_time,
                         **dict(KW, refit=True))
    f0, f1 = _f1(whole_fov_fit, sim), _f1(est, sim)
    assert f1["F1"] >= f0["F1"] - 0.02, (f0["F1"], f1["F1"])
    assert f1["median_trace_corr"] >= f0["median_trace_corr"] - 0.02


def test_sparse_nmf_fit(movie):
    sim, Yr = movie
    tr = sim.truth
    est = fit_cnmf_array(Yr, DIMS, **dict(KW, method_init="sparse_nmf", K=N + 3, fr=tr.fr,
                                          decay_time=tr.decay_time))
    s = _f1(est, sim)
    assert s["recall"] >= 0.7, s
    assert est.b.shape[1] == 2


@pytest.mark.parametrize("method", ["greedy_roi", "sparse_nmf"])
def test_K_auto_is_a_clear_error(method):
    Yr = np.zeros((16 * 16, 20), np.float32)
    with pytest.raises(ParameterError, match="K"):
        fit_cnmf_array(Yr, (16, 16), **dict(KW, method_init=method, K=None))


def test_K_auto_rejected_by_params():
    from cellextract.params import resolve_params
    with pytest.raises(ParameterError, match="init.K"):
        resolve_params(preset="2p", table={"K": None})
