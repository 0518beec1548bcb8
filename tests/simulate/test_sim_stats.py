"""Statistical properties the simulator promises: noise model, AR dynamics, spikes."""

import numpy as np
import pytest

from cellextract.simulate import simulate
from cellextract.simulate.traces import ar_coefficients, impulse_peak, neuron_activity


@pytest.mark.parametrize("kind", ["1p", "2p"])
def test_noise_is_shot_plus_read(kind):
    sim = simulate(kind=kind, dims=(48, 48), frames=200, n_neurons=5, seed=1)
    clean = sim.frames(noise=False)
    resid = sim.frames() - clean
    from cellextract.simulate.movie import KIND_DEFAULTS

    kd = KIND_DEFAULTS[kind]
    x = clean - kd["offset"]
    z = resid / np.sqrt(kd["gain"] * x + kd["read_sd"] ** 2)
    assert abs(z.mean()) < 0.01 and z.std() == pytest.approx(1.0, abs=0.02)
    # brighter pixels are noisier (Poisson-like)
    bright, dim = x > np.percentile(x, 80), x < np.percentile(x, 20)
    assert resid[bright].std() > resid[dim].std()
    # noise is independent between frames
    r = np.corrcoef(resid[:-1].ravel(), resid[1:].ravel())[0, 1]
    assert abs(r) < 0.02


def test_ar_dynamics_follow_decay_time():
    for order in (1, 2):
        g = ar_coefficients(0.4, 10.0, rise_time=0.06, order=order)
        assert g[0] + (g[1] if order == 2 else 0) < 1
        h = np.zeros(200)
        h[0] = 1
        from scipy.signal import lfilter

        resp = lfilter([1], np.r_[1, -g], h)
        assert resp.max() == pytest.approx(impulse_peak(g))
        # the tail decays with the decay time
        assert resp[30] / resp[20] == pytest.approx(np.exp(-10 / 4.0), rel=0.02)  # 10 frames / 4
    t = simulate(kind="1p", dims=(32, 32), frames=10, n_neurons=50, ar_order=1, decay_time=0.8,
                 fr=20.0).truth
    assert t.g.shape == (50, 1)
    tau = -1.0 / (np.log(t.g[:, 0]) * 20.0)
    assert np.median(tau) == pytest.approx(0.8, rel=0.1)


def test_spikes_heterogeneous_rates_and_amplitudes():
    rng = np.random.default_rng(0)
    a = neuron_activity(rng, 200, 6000, 10.0, decay_time=0.4)
    rate = a["counts"].sum(1) / 600.0
    assert 0.03 < np.percentile(rate, 5) and np.percentile(rate, 95) < 3.0
    assert np.percentile(rate, 95) / np.percentile(rate, 5) > 8
    # bursts: several spikes within one frame happen
    assert (a["counts"] >= 3).sum() > 20
    # some neurons are dim: amplitude spread over ~ an order of magnitude
    assert np.percentile(a["amplitude"], 90) / np.percentile(a["amplitude"], 10) > 3
    # single-spike transient peaks at the neuron's amplitude
    k = int(np.argmax(a["rates"]))
    S1 = np.zeros((1, 100), np.float32)
    S1[0, 5] = a["amplitude"][k] / impulse_peak(a["g"][k])
    from cellextract.simulate.traces import calcium_from_innovation

    assert calcium_from_innovation(S1, a["g"][k:k + 1]).max() == pytest.approx(a["amplitude"][k], rel=1e-4)


def test_truth_snr_orders_detectability():
    t = simulate(kind="1p", dims=(64, 64), frames=20, n_neurons=30, seed=2).truth
    assert (t.snr > 0).all()
    assert np.percentile(t.snr, 90) / np.percentile(t.snr, 10) > 2
    # dims of noise and background maps
    assert t.noise_sd.shape == (64, 64) and t.background.shape == (64, 64)
    assert t.background.min() > 100   # camera offset plus a bright 1P background
