"""write_simulation: formats, series parts, truth file."""

import h5py
import numpy as np
import pytest

from cellextract.errors import ParameterError
from cellextract.io import open_movie
from cellextract.simulate import load_truth, simulate, write_simulation

KW = dict(kind="1p", dims=(40, 48), frames=45, n_neurons=6, seed=7, fr=20.0)


def test_tif_and_truth_file(tmp_path):
    paths = write_simulation(tmp_path / "m.tif", motion="pw_rigid", **KW)
    assert paths == [tmp_path / "m.tif"]
    sim = simulate(motion="pw_rigid", **KW)
    with open_movie(paths[0]) as m:
        assert m.n_frames == 45 and tuple(m.dims) == (40, 48)
        assert m.fr == pytest.approx(20.0)
        np.testing.assert_array_equal(m.read(0, 45), sim.frames())
    with h5py.File(tmp_path / "m_truth.h5") as f:
        assert f["A"].shape == (40 * 48, 6) and f["A"].dtype == np.float32
        assert f["C"].shape == (6, 45) and f["S"].shape == (6, 45)
        assert f["shifts"].shape == (45, 2) and f["shift_field"].shape[:2] == (45, 2)
        assert f["centers"].shape == (6, 2) and f["baseline"].shape == (6,)
        assert f.attrs["fr"] == 20.0 and list(f.attrs["dims"]) == [40, 48]
        assert f.attrs["kind"] == "1p" and f.attrs["seed"] == 7
        assert f.attrs["decay_time"] == pytest.approx(0.4)
    t = load_truth(tmp_path / "m_truth.h5")
    np.testing.assert_allclose(t.A.toarray(), sim.truth.A.toarray())
    np.testing.assert_array_equal(t.C, sim.truth.C)
    np.testing.assert_array_equal(t.shift_field, sim.truth.shift_field)
    assert t.dims == (40, 48) and t.motion == "pw_rigid"


def test_isxd_series_consecutive(tmp_path):
    paths = write_simulation(tmp_path / "s.isxd", parts=3, truth_path=tmp_path / "gt.h5", **KW)
    assert [p.name for p in paths] == ["s_part01.isxd", "s_part02.isxd", "s_part03.isxd"]
    whole = simulate(**KW).frames()
    got, starts, ns = [], [], []
    for p in paths:
        with open_movie(p) as m:
            starts.append(m.start_time)
            ns.append(m.n_frames)
            got.append(m.read(0, m.n_frames))
    assert sum(ns) == 45
    # part k starts exactly where part k-1 ends
    for k in (1, 2):
        assert starts[k] == pytest.approx(starts[k - 1] + ns[k - 1] / 20.0, abs=1e-3)
    np.testing.assert_allclose(np.concatenate(got), whole, rtol=1e-6)
    assert load_truth(tmp_path / "gt.h5").n_frames == 45


def test_avi_written(tmp_path):
    (p,) = write_simulation(tmp_path / "v.avi", **KW)
    with open_movie(p) as m:
        assert m.n_frames == 45 and tuple(m.dims) == (40, 48)
        y = m.read(0, 45)
    ref = simulate(**KW).frames()
    assert np.corrcoef(y.ravel(), ref.ravel())[0, 1] > 0.95


def test_bad_output(tmp_path):
    with pytest.raises(ParameterError):
        write_simulation(tmp_path / "x.mp4", **KW)
    with pytest.raises(ParameterError):
        write_simulation(tmp_path / "x.tif", parts=0, **KW)
