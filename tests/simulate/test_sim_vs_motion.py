"""Cross-check: the motion package recovers the simulator's ground-truth shifts (same convention)."""

import numpy as np

from cellextract.motion.register import image_spectra, rigid_shifts
from cellextract.simulate import shift_rmse, simulate


def test_rigid_registration_recovers_truth_shifts():
    sim = simulate(kind="2p", dims=(96, 96), frames=120, n_neurons=25, motion="rigid",
                   max_shift=4.0, seed=3)
    t = sim.truth
    template = sim.frames(noise=False, motion=False).mean(0)
    est = rigid_shifts(sim.frames(), image_spectra(template[None])[0], max_shifts=(6, 6))
    assert np.corrcoef(est[:, 0], t.shifts[:, 0])[0, 1] > 0.98
    assert np.corrcoef(est[:, 1], t.shifts[:, 1])[0, 1] > 0.98
    assert shift_rmse(est, t.shifts, remove_offset=False) < 0.3
