"""Simulated motion follows the registration convention of docs/architecture.md."""

import numpy as np
import pytest

from cellextract.simulate import simulate
from cellextract.simulate.motion import dense_field, register_rigid

KW = dict(kind="2p", dims=(80, 96), frames=40, n_neurons=10, seed=5)


def _centroid(frames):
    """Intensity centroid (row, col) of each frame, (n, 2)."""
    n, H, W = frames.shape
    yy, xx = np.mgrid[0:H, 0:W]
    tot = frames.sum((1, 2))
    return np.stack([(frames * yy).sum((1, 2)) / tot, (frames * xx).sum((1, 2)) / tot], 1)


def _one_neuron(seed, motion):
    """A single-neuron movie (neurons only, vignetting divided out) with and without motion."""
    sim = simulate(motion=motion, max_shift=4.0, **{**KW, "n_neurons": 1, "seed": seed})
    raw = sim.frames(noise=False, background=False) / sim.vignette
    still = sim.frames(noise=False, background=False, motion=False) / sim.vignette
    return sim.truth, raw, still


@pytest.mark.parametrize("seed", [1, 3, 5])
def test_rigid_shift_convention_by_centroids(seed):
    t, raw, still = _one_neuron(seed, "rigid")
    assert np.abs(t.shifts).max() <= 4.0 and np.abs(t.shifts).max() > 0.5
    d = _centroid(raw) - _centroid(still)
    # raw(y, x) = unmoved(y + dy, x + dx): the content sits at (y - dy, x - dx) in the raw
    # frame, so registering it means moving it by +(dy, dx)
    np.testing.assert_allclose(d, -t.shifts, atol=0.1)


def test_registering_with_truth_recovers_unmoved_frames():
    sim = simulate(motion="rigid", max_shift=5.0, **{**KW, "kind": "1p"})
    t = sim.truth
    raw = sim.frames(noise=False) / sim.vignette
    still = sim.frames(noise=False, motion=False) / sim.vignette
    b = 8
    for i in range(0, 40, 7):
        good = register_rigid(raw[i], t.shifts[i])[b:-b, b:-b]
        bad = register_rigid(raw[i], -t.shifts[i])[b:-b, b:-b]
        ref = still[i][b:-b, b:-b]
        err, err_bad = np.abs(good - ref).mean(), np.abs(bad - ref).mean()
        assert err < 0.005 * ref.mean()
        if np.abs(t.shifts[i]).max() > 0.5:
            assert err_bad > 5 * err


def test_pw_rigid_field_convention():
    sim = simulate(motion="pw_rigid", max_shift=5.0, **KW)
    t = sim.truth
    T, two, gh, gw = t.shift_field.shape
    assert two == 2 and gh >= 2 and gw >= 2 and T == 40
    assert np.abs(t.shift_field).max() <= 5.0 + 1e-4
    # shifts are the rigid part: the spatial mean of the field nodes
    np.testing.assert_allclose(t.shift_field.mean(axis=(2, 3)), t.shifts, atol=1e-4)
    # the field is not rigid
    assert np.ptp(t.shift_field, axis=(2, 3)).max() > 0.3
    for seed in (1, 3, 5):  # neurons well inside the frame
        t, raw, still = _one_neuron(seed, "pw_rigid")
        c_raw = _centroid(raw)
        d = c_raw - _centroid(still)
        for i in range(0, 40, 3):
            f = dense_field(t.shift_field[i], t.dims)
            y, x = np.round(c_raw[i]).astype(int)
            np.testing.assert_allclose(d[i], -f[:, y, x], atol=0.15)


@pytest.mark.parametrize("motion", ["rigid", "pw_rigid"])
def test_motion_is_smooth_and_deterministic(motion):
    a = simulate(motion=motion, **{**KW, "frames": 300})
    b = simulate(motion=motion, **{**KW, "frames": 300})
    assert np.array_equal(a.truth.shift_field, b.truth.shift_field)
    s = a.truth.shifts
    # slow drift dominates frame-to-frame jitter
    assert np.abs(np.diff(s, axis=0)).mean() < 0.5 * s.std(0).max()


def test_no_motion_has_zero_shifts():
    t = simulate(**KW).truth
    assert not t.shifts.any() and t.shift_field.shape == (40, 2, 1, 1)


def test_field_at_matches_dense_field():
    from cellextract.simulate.motion import field_at

    t = simulate(motion="pw_rigid", **KW).truth
    ys, xs = np.array([0, 10, 40, 79]), np.array([5, 50, 95, 20])
    got = field_at(t.shift_field, t.dims, ys, xs)
    assert got.shape == (40, 2, 4)
    for i in (0, 17, 39):
        np.testing.assert_allclose(got[i], dense_field(t.shift_field[i], t.dims)[:, ys, xs], atol=1e-5)
