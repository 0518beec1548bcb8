import numpy as np
import pytest

from cellextract.cnmf.noise import ar_from_autocovariance, g_from_decay, noise_psd
from cellextract.errors import ParameterError


def _ar1(T, g, rate, sn, seed):
    rng = np.random.default_rng(seed)
    s = (rng.random(T) < rate).astype(float)
    c = np.zeros(T)
    for t in range(T):
        c[t] = (g * c[t - 1] if t else 0) + s[t]
    return c + sn * rng.standard_normal(T), c


@pytest.mark.parametrize("method", ["mean", "median", "logmexp"])
def test_noise_psd_white(method):
    rng = np.random.default_rng(0)
    Y = 0.7 * rng.standard_normal((50, 2000)).astype(np.float32)
    sn = noise_psd(Y, noise_method=method)
    assert sn.shape == (50,)
    assert abs(np.median(sn) - 0.7) < 0.03


def test_noise_psd_ignores_calcium_signal():
    y, _ = _ar1(3000, 0.95, 0.02, 0.3, 1)
    assert abs(noise_psd(y) - 0.3) < 0.05
    assert y.std() > 0.5  # the signal itself is much larger than the noise


def test_ar_from_autocovariance_recovers_g():
    y, _ = _ar1(20000, 0.9, 0.05, 0.2, 2)
    g = ar_from_autocovariance(y, p=1, sn=0.2, fudge_factor=1.0)
    assert abs(g[0] - 0.9) < 0.03


def test_g_from_decay():
    g1 = g_from_decay(p=1, decay_time=0.4, fr=10)
    assert np.allclose(g1, [np.exp(-1 / 4)])
    g2 = g_from_decay(p=2, decay_time=0.4, fr=10, rise_time=0.05)
    d, r = np.exp(-1 / 4), np.exp(-1 / 0.5)
    assert np.allclose(g2, [d + r, -d * r])
    assert g_from_decay(p=0, decay_time=0.4, fr=10).size == 0
    with pytest.raises(ParameterError):
        g_from_decay(p=3, decay_time=0.4, fr=10)
    with pytest.raises(ParameterError):
        noise_psd(np.zeros(100), noise_method="bogus")
