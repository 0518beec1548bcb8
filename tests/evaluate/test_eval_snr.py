import numpy as np
import pytest
from scipy import stats

from cellextract.evaluate.snr import (compute_snr, event_exceptionality, fitness_to_snr,
                                      mode_robust, n_event_samples, remove_baseline)


def test_n_event_samples():
    assert n_event_samples(30, 0.4) == 12
    assert n_event_samples(10, 0.4) == 4
    assert n_event_samples(10, 0.41) == 5
    assert n_event_samples(1, 0.1) == 1


def test_mode_robust_finds_the_peak_not_the_mean():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 4000), rng.exponential(20, 1000)])
    m = mode_robust(x[None])[0]
    assert abs(m) < 0.4 and x.mean() > 3
    np.testing.assert_allclose(mode_robust(np.array([[1.0, 2.0, 2.1, 9.0]])), [2.05])


def test_remove_baseline_flattens_a_slow_drift():
    t = np.arange(5000)
    rng = np.random.default_rng(1)
    tr = (0.0005 * t + 2 * np.sin(t / 2500))[None] + rng.normal(0, 0.1, (1, 5000))
    out = remove_baseline(tr)
    assert np.abs(np.percentile(out, 8) - 0).max() < 0.3
    assert out.std() < tr.std() / 4


def test_clean_transient_vs_pure_noise():
    rng = np.random.default_rng(2)
    T = 3000
    tr = rng.normal(size=(3, T))
    kern = np.exp(-np.arange(80) / 12.0)
    s = np.zeros(T)
    s[[400, 1400, 2400]] = 1
    tr[1] += 15 * np.convolve(s, kern)[:T]
    tr[2] += 30 * np.convolve(s, kern)[:T]
    snr = compute_snr(tr, None, fr=30, decay_time=0.4)
    assert snr[0] < 1.2
    assert snr[1] > 3.5
    assert snr[2] > snr[1]


def test_yra_is_added_and_scale_invariance():
    rng = np.random.default_rng(3)
    C = np.zeros((2, 1000))
    C[:, 300:310] = 10
    YrA = rng.normal(size=(2, 1000))
    a = compute_snr(C, YrA, fr=20, decay_time=0.5)
    b = compute_snr(7 * C, 7 * YrA, fr=20, decay_time=0.5)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(compute_snr(C + YrA, None, fr=20, decay_time=0.5), a)


def test_exceptionality_matches_direct_formula():
    rng = np.random.default_rng(4)
    tr = rng.normal(size=(1, 200))
    tr[0, 50:55] += 8
    N = 5
    fit, sd, md = event_exceptionality(tr, N=N)
    z = (tr[0] - md[0]) / (3 * sd[0])
    lp = stats.norm.logsf(z)
    ref = min(lp[i:i + N].sum() for i in range(200 - N + 1))
    assert fit[0] == pytest.approx(ref, rel=1e-9)
    assert fitness_to_snr(fit, N)[0] == pytest.approx(-stats.norm.ppf(np.exp(ref / N)), rel=1e-6)


def test_flat_and_empty_traces():
    assert compute_snr(np.zeros((0, 50)), None, fr=10, decay_time=0.4).shape == (0,)
    out = compute_snr(np.ones((2, 50)), None, fr=10, decay_time=0.4)
    assert np.all(np.isfinite(out)) and np.allclose(out, 0)
    huge = np.zeros((1, 500))
    huge[0, 100:120] = 1e6
    huge += np.random.default_rng(5).normal(size=(1, 500))
    assert np.isfinite(compute_snr(huge, None, fr=30, decay_time=0.4)[0])
