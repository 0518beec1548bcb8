import numpy as np
import pytest
import scipy.sparse as sp

from cellextract.cnmf.estimates import Estimates
from cellextract.errors import ParameterError
from cellextract.evaluate import evaluate_components

Q = dict(fr=30.0, decay_time=0.4, min_SNR=2.5, SNR_lowest=0.5, rval_thr=0.85, rval_lowest=-1.0,
         use_cnn=False, min_cnn_thr=0.9, cnn_lowest=0.1, gSig=3)


def _with_junk(estimates, movie):
    """Append a noise footprint with a noise trace (a false positive)."""
    Yr, A, C = movie
    rng = np.random.default_rng(9)
    junk = np.zeros(A.shape[0])
    px = rng.choice(A.shape[0], 40, replace=False)
    junk[px] = rng.random(40)
    junk /= np.linalg.norm(junk)
    A2 = sp.csc_matrix(sp.hstack([A, sp.csc_matrix(junk[:, None])]))
    C2 = np.vstack([C, np.zeros((1, C.shape[1]), np.float32)])
    YrA2 = np.vstack([estimates.YrA, rng.normal(size=(1, C.shape[1])).astype(np.float32)])
    return Estimates(A=A2, C=C2, YrA=YrA2, dims=estimates.dims)


def test_accepts_cells_rejects_noise(estimates, movie):
    est = _with_junk(estimates, movie)
    out = evaluate_components(est, movie[0], **Q)
    assert out.idx_components.tolist() == [0, 1, 2, 3]
    assert out.idx_components_bad.tolist() == [4]
    assert out.SNR_comp.shape == (5,) and out.r_values.shape == (5,)
    assert np.isnan(out.cnn_preds).all() and out.cnn_preds.shape == (5,)
    assert est.idx_components is None      # input untouched
    sel = out.select(out.idx_components)
    assert sel.n_components == 4


def test_empty_input(caplog):
    est = Estimates(A=sp.csc_matrix((40 * 44, 0)), C=np.zeros((0, 100), np.float32),
                    YrA=np.zeros((0, 100), np.float32), dims=(40, 44))
    Yr = np.zeros((40 * 44, 100), np.float32)
    with caplog.at_level("WARNING"):
        out = evaluate_components(est, Yr, **Q)
    assert "no components" in caplog.text
    for v in (out.idx_components, out.idx_components_bad, out.SNR_comp, out.r_values, out.cnn_preds):
        assert v.shape == (0,)


def test_all_rejected_is_valid(estimates, movie, caplog):
    q = dict(Q, min_SNR=1e9, rval_thr=2.0)
    with caplog.at_level("WARNING"):
        out = evaluate_components(estimates, movie[0], **q)
    assert out.idx_components.size == 0 and out.idx_components_bad.tolist() == [0, 1, 2, 3]
    assert "all 4 components were rejected" in caplog.text


def test_bad_rate_is_a_parameter_error(estimates, movie):
    with pytest.raises(ParameterError):
        evaluate_components(estimates, movie[0], **dict(Q, fr=0))


def test_memmap_input_and_degenerate_components(tmp_path, estimates, movie):
    from cellextract.io.memmap import MemmapWriter, memmap_name, open_memmap

    Yr, A, C = movie
    H, W = estimates.dims
    path = memmap_name(tmp_path / "m", (H, W), Yr.shape[1])
    with MemmapWriter(path, (H, W), Yr.shape[1]) as wr:
        wr.write(0, Yr.reshape(W, H, -1).transpose(2, 1, 0))
    Ym, _, _ = open_memmap(path)
    ref = evaluate_components(estimates, Yr, **Q)
    got = evaluate_components(estimates, Ym, **dict(Q, n_processes=2, block_mb=0.05))
    np.testing.assert_allclose(got.r_values, ref.r_values, rtol=1e-6)
    # an empty footprint, a flat trace and no YrA: defined outputs, no crash
    A2 = sp.csc_matrix(sp.hstack([A, sp.csc_matrix((A.shape[0], 1))]))
    C2 = np.vstack([C, np.zeros((1, C.shape[1]), np.float32)])
    est = Estimates(A=A2, C=C2, YrA=None, dims=estimates.dims)
    out = evaluate_components(est, Ym, **dict(Q, use_cnn=True))
    assert np.isnan(out.r_values[4]) and abs(out.SNR_comp[4]) < 1e-9
    assert 4 in out.idx_components_bad and np.isfinite(out.cnn_preds).all()


def test_transient_test_rejects_a_slow_fluctuation_the_r_value_accepts(movie):
    """A slowly fluctuating background piece with its own footprint matches the movie (high r)
    but has no transient: the transient test (max_event_pval) rejects it, not the cells."""
    from scipy.signal import lfilter
    Yr, A, C = movie
    rng = np.random.default_rng(4)
    a = np.exp(-1.0 / 100.0)                                  # 100-frame correlation time
    slow = lfilter([np.sqrt(1 - a * a)], [1.0, -a], rng.normal(size=Yr.shape[1])) * 30.0
    slow = (slow - slow.min()).astype(np.float32)
    yy, xx = np.mgrid[:40, :44]
    img = np.exp(-((yy - 20) ** 2 + (xx - 22) ** 2) / (2 * 2.5 ** 2))
    img[img < np.exp(-4.5)] = 0
    fp = (img / np.linalg.norm(img)).ravel(order="F")
    Yr = np.ascontiguousarray(Yr + np.outer(fp, slow), dtype=np.float32)
    A2 = sp.csc_matrix(sp.hstack([A, sp.csc_matrix(fp[:, None])]))
    C2 = np.vstack([C, slow[None]]).astype(np.float32)
    YrA = (A2.T @ Yr - (A2.T @ A2) @ C2 - A2.T.sum(axis=1).A * 5.0).astype(np.float32)
    g = [np.array([np.exp(-1.0 / 8.0)])] * 5
    est = Estimates(A=A2, C=C2, YrA=np.asarray(YrA), dims=(40, 44), g=g)
    off = evaluate_components(est, Yr, **Q)
    on = evaluate_components(est, Yr, **dict(Q, max_event_pval=0.01))
    assert off.r_values[4] >= Q["rval_thr"] and 4 in off.idx_components.tolist()
    assert on.idx_components.tolist() == [0, 1, 2, 3] and on.idx_components_bad.tolist() == [4]
    ev = on.extra["event_pval"]
    assert ev.shape == (5,) and ev[4] > 0.01 and (ev[:4] < 1e-6).all()
