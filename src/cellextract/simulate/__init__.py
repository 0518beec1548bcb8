"""cellextract.simulate: synthetic calcium-imaging movies with ground truth, and a scorer.

Public API
----------
simulate(*, kind, dims, frames, n_neurons, fr, motion, max_shift, decay_time, seed, chunk,
         preset, ...) -> Simulation
write_simulation(out_path, *, parts=1, truth_path=None, **simulate_kwargs) -> list[Path]
load_truth(path) -> Truth
"""

from cellextract.simulate.movie import KIND_DEFAULTS, PRESETS, Simulation, simulate
from cellextract.simulate.truth import Truth, load_truth, write_truth
from cellextract.simulate.write import part_paths, write_simulation

__all__ = ["simulate", "Simulation", "PRESETS", "KIND_DEFAULTS", "write_simulation",
           "part_paths", "Truth", "load_truth", "write_truth"]
from cellextract.simulate.score import score, shift_rmse  # noqa: E402

__all__ += ["score", "shift_rmse"]
