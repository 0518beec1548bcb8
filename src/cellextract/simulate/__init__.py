"""cellextract.simulate: synthetic calcium-imaging movies with exact ground truth, and a scorer.

Public API
----------
``simulate(*, kind='1p', dims=(128, 128), frames=1000, n_neurons=40, fr=None,
motion='none', max_shift=5.0, decay_time=None, seed=0, chunk=500, preset=None, gsig=None,
ar_order=2, noise_scale=1.0, background_scale=1.0) -> Simulation``
    Lazy movie: ``sim.truth`` (:class:`Truth`), ``sim.frames(start, stop, *, noise,
    motion, neurons, background)``, ``sim.iter_chunks(chunk)`` yielding
    ``(start, (n, H, W) float32)``; frame ``t`` depends only on ``(seed, t)``.
``write_simulation(out_path, *, parts=1, truth_path=None, dtype=None, start_time=...,
**simulate_kwargs) -> list[Path]``
    Movie (.tif/.tiff/.isxd/.avi, or a series ``<stem>_partNN<ext>``) + ``<stem>_truth.h5``.
``load_truth(path) -> Truth``, ``write_truth(path, truth)``
``score(A_found, dims, truth, *, C_found=None, S_found=None, ...) -> dict``
``shift_rmse(est, true, *, remove_offset=True) -> float``
``dense_field(field_t, dims)``, ``field_at(shift_field, dims, ys, xs)``,
``register_rigid(frame, shift)``: the motion convention made executable.

Presets: ``'bench_1p'`` (1P, 256 x 256 x 3000 at 10 Hz, 150 neurons) and ``'bench_2p'``
(2P, 256 x 256 x 3000 at 30 Hz, 150 neurons incl. overlapping pairs); see
:mod:`cellextract.simulate.movie`.

Shifts use the registration convention of ``docs/architecture.md``: ``(dy, dx)`` is the
translation that registers raw frame ``t`` (``raw(y, x) = unmoved(y + dy, x + dx)``); see
:mod:`cellextract.simulate.motion`.
"""

from cellextract.simulate.motion import dense_field, field_at, register_rigid
from cellextract.simulate.movie import KIND_DEFAULTS, PRESETS, Simulation, simulate
from cellextract.simulate.score import score, shift_rmse
from cellextract.simulate.truth import Truth, load_truth, write_truth
from cellextract.simulate.write import part_paths, write_simulation

__all__ = ["simulate", "Simulation", "PRESETS", "KIND_DEFAULTS", "write_simulation",
           "part_paths", "Truth", "load_truth", "write_truth", "score", "shift_rmse",
           "dense_field", "field_at", "register_rigid"]
