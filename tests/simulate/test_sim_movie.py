"""Simulator: determinism, shapes, truth exactness, streaming, realism checks."""

import numpy as np
import pytest

from cellextract.errors import ParameterError
from cellextract.simulate import PRESETS, simulate

SMALL = dict(dims=(48, 56), frames=60, n_neurons=8, seed=3)


def _fortran(frames):
    """(n, H, W) -> (H*W, n) in Fortran pixel order."""
    n = frames.shape[0]
    return frames.transpose(0, 2, 1).reshape(n, -1).T


@pytest.mark.parametrize("kind", ["1p", "2p"])
def test_shapes_and_determinism(kind):
    a = simulate(kind=kind, **SMALL)
    b = simulate(kind=kind, **SMALL)
    c = simulate(kind=kind, **{**SMALL, "seed": 4})
    ya, yb, yc = a.frames(), b.frames(), c.frames()
    assert ya.shape == (60, 48, 56) and ya.dtype == np.float32
    assert np.array_equal(ya, yb)
    assert not np.allclose(ya, yc)
    assert ya.min() >= 0
    t = a.truth
    assert t.A.shape == (48 * 56, 8) and t.C.shape == (8, 60) and t.S.shape == (8, 60)
    assert t.shifts.shape == (60, 2) and t.centers.shape == (8, 2)
    np.testing.assert_allclose(np.sqrt(t.A.multiply(t.A).sum(0)).A1, 1.0, rtol=1e-4)
    assert (t.S >= 0).all() and (t.C >= 0).all()


@pytest.mark.parametrize("kind", ["1p", "2p"])
def test_truth_reproduces_neuron_movie(kind):
    sim = simulate(kind=kind, **SMALL)
    t = sim.truth
    neurons = sim.frames(noise=False, background=False)
    expect = t.A @ (t.baseline[:, None] + t.C)
    np.testing.assert_allclose(_fortran(neurons), expect, atol=1e-3 * expect.max())
    # the calcium follows the AR model driven by S exactly
    g = t.g
    pred = g[:, :1] * t.C[:, 1:-1] + g[:, 1:2] * t.C[:, :-2] + t.S[:, 2:]
    np.testing.assert_allclose(t.C[:, 2:], pred, atol=1e-3 * t.C.max())


def test_centers_inside_their_footprints():
    t = simulate(kind="2p", **SMALL).truth
    imgs = t.footprints_2d()
    for k, (r, c) in enumerate(t.centers):
        patch = imgs[k, max(0, int(r) - 3):int(r) + 4, max(0, int(c) - 3):int(c) + 4]
        assert patch.max() > 0.3 * imgs[k].max()


def test_streaming_equals_one_shot():
    sim = simulate(kind="1p", motion="rigid", **SMALL)
    whole = sim.frames()
    parts = [(s, y) for s, y in sim.iter_chunks(7)]
    assert [s for s, _ in parts] == list(range(0, 60, 7))
    assert np.array_equal(np.concatenate([y for _, y in parts]), whole)
    assert np.array_equal(sim.frames(13, 29), whole[13:29])


def test_1p_background_dominates_neurons():
    sim = simulate(kind="1p", dims=(64, 64), frames=200, n_neurons=15, seed=0)
    t = sim.truth
    neur = _fortran(sim.frames(noise=False, background=False))
    active = neur.max(1) > 0.2 * neur.max()
    bg = t.background.ravel(order="F")[active]
    # the background is several times brighter than the neurons' peak signal
    assert np.median(bg / neur.max(1)[active]) > 3
    # and fluctuates in time (low-rank modes + neuropil blobs), not just noise
    bgf = sim.frames(noise=False, neurons=False)
    assert np.median(bgf.std(0)) > 0.01 * np.median(bgf.mean(0))


def test_2p_has_overlapping_pairs():
    t = simulate(kind="2p", dims=(96, 96), frames=10, n_neurons=30, seed=2).truth
    A = t.A.toarray()
    M = (A > 0.2 * A.max(0)).astype(np.float32)
    inter = M.T @ M
    np.fill_diagonal(inter, 0)
    assert (inter > 5).any(axis=1).sum() >= 2


def test_presets_and_errors():
    sim = simulate(preset="bench_2p", frames=20)
    assert sim.dims == PRESETS["bench_2p"]["dims"] and sim.n_frames == 20 and sim.fr == 30.0
    assert sim.truth.n_neurons == 150
    with pytest.raises(ParameterError):
        simulate(kind="3p")
    with pytest.raises(ParameterError):
        simulate(kind="1p", motion="wobble")
