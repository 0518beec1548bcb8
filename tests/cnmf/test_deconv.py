import numpy as np
import pytest

from cellextract.deconv import deconvolve_batch, deconvolve_trace
from cellextract.errors import ParameterError


def _trace(T, g, rate, sn, base, seed):
    rng = np.random.default_rng(seed)
    s = (rng.random(T) < rate) * rng.uniform(0.5, 1.5, T)
    c = np.zeros(T)
    p = len(g)
    for t in range(T):
        c[t] = s[t] + sum(g[j] * c[t - 1 - j] for j in range(p) if t - 1 - j >= 0)
    return c + base + sn * rng.standard_normal(T), c, s


@pytest.mark.parametrize("bas_nonneg", [True, False])
def test_ar1_recovers_calcium_and_baseline(bas_nonneg):
    y, c, s = _trace(2000, [0.95], 0.03, 0.2, 1.5, 0)
    ch, sh, b, g, lam = deconvolve_trace(y, p=1, g=[0.95], bas_nonneg=bas_nonneg)
    assert ch.dtype == np.float32 and ch.shape == (2000,)
    assert np.corrcoef(ch, c)[0, 1] > 0.97
    assert abs(b - 1.5) < 0.25  # L1 shrinkage biases the baseline up a little
    assert (sh >= 0).all() and np.corrcoef(sh, s)[0, 1] > 0.5
    assert np.allclose(g, [0.95])


def test_negative_baseline_depends_on_bas_nonneg():
    y, c, _ = _trace(2000, [0.9], 0.03, 0.1, -0.8, 1)
    _, _, b_free, _, _ = deconvolve_trace(y, p=1, g=[0.9], bas_nonneg=False)
    _, _, b_pos, _, _ = deconvolve_trace(y, p=1, g=[0.9], bas_nonneg=True)
    assert b_free < -0.6
    assert b_pos >= 0.0


def test_ar2():
    g = [1.7, -0.712]
    y, c, _ = _trace(2000, g, 0.02, 0.2, 0.5, 2)
    ch, sh, b, gg, _ = deconvolve_trace(y, p=2, g=g, bas_nonneg=False)
    assert gg.shape == (2,)
    assert np.corrcoef(ch, c)[0, 1] > 0.95


def test_p0_no_deconvolution():
    y, c, _ = _trace(1000, [0.9], 0.03, 0.05, 2.0, 3)
    ch, sh, b, g, lam = deconvolve_trace(y, p=0, bas_nonneg=True)
    assert g.size == 0 and lam == 0.0
    assert abs(b - np.median(y)) < 1e-9
    assert np.allclose(ch, np.maximum(y - b, 0), atol=1e-5)
    assert (sh >= 0).all()


def test_batch_and_estimated_g():
    Y = np.stack([_trace(1500, [0.93], 0.03, 0.2, 1.0, k)[0] for k in range(4)])
    C, S, bl, G, lam = deconvolve_batch(Y, p=1, g=None, bas_nonneg=False)
    assert C.shape == (4, 1500) and G.shape == (4, 1) and bl.shape == (4,)
    assert np.all((G > 0.8) & (G < 1.0))


def test_bad_settings():
    with pytest.raises(ParameterError):
        deconvolve_trace(np.zeros(100), p=3)
    with pytest.raises(ParameterError):
        deconvolve_trace(np.zeros(100), p=1, method_deconvolution="cvxpy")
