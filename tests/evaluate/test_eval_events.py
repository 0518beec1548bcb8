"""The transient test: innovations under the AR model, family-wise p of the strongest one."""
import numpy as np
import pytest
from scipy.signal import lfilter

from cellextract.evaluate.events import (event_pvalues, familywise_pvalue, innovations,
                                         max_innovation_z)
from cellextract.evaluate.select import select_components

FR, TAU = 10.0, 0.4
G = np.exp(-1.0 / (FR * TAU))


def _calcium(spikes, g=G):
    return lfilter([1.0], [1.0, -g], spikes)


def test_innovations_recover_spikes_of_an_ar1_trace():
    rng = np.random.default_rng(0)
    s = (rng.random((3, 500)) < 0.02) * rng.uniform(1, 3, (3, 500))
    c = _calcium(s)
    e = innovations(c, [np.array([G])] * 3)
    assert e.shape == (3, 499)
    np.testing.assert_allclose(e, s[:, 1:], atol=1e-9)


def test_innovations_ar2_and_missing_g():
    rng = np.random.default_rng(1)
    s = (rng.random(400) < 0.03).astype(float)
    g = np.array([1.5, -0.56])
    c = lfilter([1.0], [1.0, -g[0], -g[1]], s)
    e = innovations(c[None], np.array([g]))
    np.testing.assert_allclose(e[0], s[2:], atol=1e-9)
    # no AR model (p = 0 / None / NaN): the trace itself
    np.testing.assert_allclose(innovations(c[None], None)[0], c[1:])
    np.testing.assert_allclose(innovations(c[None], [np.array([np.nan])])[0], c[1:])


def test_familywise_pvalue_is_calibrated_on_noise():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(2000, 1000))
    p = event_pvalues(y, None, None)
    # Bonferroni over the rise lengths is conservative: at most the nominal rate
    assert np.mean(p < 0.01) <= 0.015
    assert np.mean(p < 0.2) > 0.03          # but not a test that never fires
    assert np.all((p >= 0) & (p <= 1))


def test_familywise_pvalue_values():
    np.testing.assert_allclose(familywise_pvalue(np.array([0.0]), 1), [0.5])
    # 1 - (1 - tail)^n stays exact for tiny tails
    z = np.array([8.0])
    tail = 6.22096057e-16
    np.testing.assert_allclose(familywise_pvalue(z, 1000), [1000 * tail], rtol=1e-6)
    assert familywise_pvalue(np.array([8.0]), 10) < familywise_pvalue(np.array([8.0]), 1000)


def test_a_clear_transient_is_significant_a_slow_drift_is_not():
    rng = np.random.default_rng(3)
    T, K = 3000, 40
    spikes = np.zeros((K, T))
    spikes[:, rng.integers(100, T - 100, K)] = 0.0
    for k in range(K):
        spikes[k, rng.integers(100, T - 100, 3)] = 8.0        # three 8-sigma jumps
    cells = _calcium(spikes) + rng.normal(size=(K, T))
    # slow background fluctuation (10 s correlation time) of 6 sigma + the same noise
    a = np.exp(-1.0 / (10.0 * FR))
    drift = lfilter([np.sqrt(1 - a * a)], [1.0, -a], rng.normal(size=(K, T)), axis=1) * 6.0
    slow = drift + rng.normal(size=(K, T))
    g = [np.array([G])] * K
    p_cells, p_slow = event_pvalues(cells, None, g), event_pvalues(slow, None, g)
    assert np.all(p_cells < 1e-4)
    assert np.mean(p_slow > 0.01) >= 0.9
    # the SNR-like size of the excursion does not matter, only the jumps do
    assert np.all(np.ptp(slow, axis=1) > np.ptp(cells, axis=1) * 0.5)


def test_a_rise_over_three_frames_needs_max_rise():
    rng = np.random.default_rng(4)
    T, K = 2000, 30
    s = np.zeros((K, T))
    for k in range(K):
        t = rng.integers(100, T - 100)
        s[k, t:t + 3] = 3.0                   # one jump spread over 3 frames (3 x 3 sigma)
    y = _calcium(s) + rng.normal(size=(K, T))
    g = [np.array([G])] * K
    p1, p3 = event_pvalues(y, None, g, max_rise=1), event_pvalues(y, None, g, max_rise=3)
    assert np.median(p3) < 1e-3 < np.median(p1)


def test_constant_trace_has_no_event():
    z = max_innovation_z(np.ones((2, 50)))
    np.testing.assert_array_equal(z, [0.0, 0.0])
    p = event_pvalues(np.ones((1, 50)), None, None)
    assert p[0] >= 0.5


def test_select_rejects_components_without_a_transient():
    snr = np.array([5.0, 1.0, 5.0])
    r = np.array([0.9, 0.95, 0.9])       # all accepted by r (CaImAn's rule)
    ev = np.array([1e-9, 0.3, np.nan])   # NaN: no test result, no rejection
    good, bad = select_components(snr, r, min_SNR=2.5, SNR_lowest=0.5, rval_thr=0.85,
                                  rval_lowest=-1, event_pval=ev, max_event_pval=0.01)
    assert good.tolist() == [0, 2] and bad.tolist() == [1]
    good, _ = select_components(snr, r, min_SNR=2.5, SNR_lowest=0.5, rval_thr=0.85,
                                rval_lowest=-1, event_pval=ev, max_event_pval=None)
    assert good.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="needs event_pval"):
        select_components(snr, r, min_SNR=2.5, SNR_lowest=0.5, rval_thr=0.85, rval_lowest=-1,
                          max_event_pval=0.01)
    with pytest.raises(ValueError, match="expected 3"):
        select_components(snr, r, min_SNR=2.5, SNR_lowest=0.5, rval_thr=0.85, rval_lowest=-1,
                          event_pval=ev[:2], max_event_pval=0.01)


def test_longer_rises_stay_calibrated_on_noise():
    rng = np.random.default_rng(5)
    y = rng.normal(size=(1000, 1000))
    p = event_pvalues(_calcium(y), None, [np.array([G])] * 1000, max_rise=3)
    assert np.mean(p < 0.01) <= 0.02
