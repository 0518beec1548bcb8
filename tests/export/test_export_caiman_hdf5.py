"""CaImAn HDF5 layout: checked by a reader written from the layout facts, and round trip."""

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from cellextract.export.caiman_hdf5 import load_estimates, normalize_footprints, save_estimates

PARAMS = {
    "data": {"fr": 10.0, "decay_time": 0.4, "dxy": [1.0, 1.0]},
    "init": {"method_init": "corr_pnr", "K": None, "gSig": [3, 3], "center_psf": True},
    "motion": {"gSig_filt": [3, 3], "border_nan": "copy", "max_shifts": [5, 5]},
    "patch": {"rf": None, "stride": 20},
    "quality": {"min_SNR": 3.0, "gSig_range": None, "use_cnn": False},
    "workflow": {"event_threshold": 0.0, "refit": False, "export_nwb": True},
}

ESTIMATE_KEYS = ("C", "S", "YrA", "b", "f", "b0", "sn", "g", "bl", "c1", "neurons_sn", "lam",
                 "idx_components", "idx_components_bad", "SNR_comp", "r_values", "cnn_preds",
                 "Cn", "dims")


def facts_value(node):
    """Decode a dataset per the facts: 'NoneType' string means None."""
    v = node[()]
    if isinstance(v, bytes) and v == b"NoneType":
        return None
    if isinstance(v, str) and v == "NoneType":
        return None
    return v


def facts_sparse(group):
    """A/W subgroup: CSC arrays data, indices, indptr, shape."""
    return sp.csc_matrix((group["data"][()], group["indices"][()], group["indptr"][()]),
                         shape=tuple(group["shape"][()]))


@pytest.fixture
def saved(tmp_path, make_estimates):
    est = make_estimates(K=5, T=40)
    path = tmp_path / "caiman_output.hdf5"
    save_estimates(path, est, params=PARAMS,
                   mmap_file="/x/Yr_d1_12_d2_10_d3_1_order_C_frames_40.mmap",
                   extra={"input_metadata": {"extraProperties": '{"a": 1}'}})
    return est, path


def test_layout_matches_caiman_facts(saved):
    est, path = saved
    with h5py.File(path, "r") as f:
        assert f.attrs["mmap_file"].endswith("frames_40.mmap")
        assert tuple(f["dims"][()]) == (12, 10)
        # params: numbers datasets, strings attributes, None the 'NoneType' dataset
        assert set(f["params"].keys()) == {"data", "init", "motion", "patch", "quality"}
        assert "workflow" not in f["params"]
        assert f["params/data/fr"][()] == 10.0
        assert list(f["params/init/gSig"][()]) == [3, 3]
        assert f["params/init"].attrs["method_init"] == "corr_pnr"
        assert f["params/motion"].attrs["border_nan"] == "copy"
        assert facts_value(f["params/init/K"]) is None
        assert facts_value(f["params/patch/rf"]) is None
        assert bool(f["params/init/center_psf"][()]) is True
        # estimates
        e = f["estimates"]
        A = facts_sparse(e["A"])
        assert A.shape == (12 * 10, 5)
        np.testing.assert_allclose(np.asarray(A.multiply(A).sum(0)).ravel(), 1.0, rtol=1e-5)
        np.testing.assert_allclose(A.toarray(), est.A.toarray(), rtol=1e-6)
        W = facts_sparse(e["W"]).tocsr()
        np.testing.assert_allclose(W.toarray(), est.W.toarray())
        for key in ESTIMATE_KEYS:
            assert key in e, key
        assert facts_value(e["b"]) is None and facts_value(e["f"]) is None
        np.testing.assert_array_equal(e["C"][()], est.C)
        assert e["C"].shape == (5, 40)
        np.testing.assert_array_equal(e["idx_components"][()], [0, 2, 4])
        np.testing.assert_array_equal(e["Cn"][()], est.Cn)
        assert "cellextract" in f and "workflow" in f["cellextract/params"]


def test_pixel_order_is_fortran(tmp_path, make_estimates):
    est = make_estimates(K=1, T=5, dims=(6, 4))
    img = np.zeros((6, 4))
    img[1, 3] = 1.0  # row 1, col 3 -> pixel 1 + 3*6 = 19
    est.A = sp.csc_matrix(img.ravel(order="F")[:, None])
    path = tmp_path / "o.hdf5"
    save_estimates(path, est, params={}, mmap_file="m.mmap")
    with h5py.File(path, "r") as f:
        assert list(f["estimates/A/indices"][()]) == [19]


def test_round_trip(saved):
    est, path = saved
    est2, params, extra = load_estimates(path)
    assert est2.dims == (12, 10)
    assert params == PARAMS
    np.testing.assert_allclose(est2.A.toarray(), est.A.toarray())
    assert sp.isspmatrix_csr(est2.W) or isinstance(est2.W, sp.csr_matrix)
    for name in ("C", "S", "YrA", "b0", "sn", "g", "SNR_comp", "Cn"):
        np.testing.assert_array_equal(getattr(est2, name), getattr(est, name))
    assert est2.b is None and est2.f is None
    np.testing.assert_array_equal(est2.idx_components_bad, [1, 3])
    assert extra["mmap_file"] == "/x/Yr_d1_12_d2_10_d3_1_order_C_frames_40.mmap"
    assert extra["input_metadata"]["extraProperties"] == '{"a": 1}'
    assert "version" in extra


def test_normalization_scales_traces(tmp_path, make_estimates):
    est = make_estimates(K=3, T=20)
    AC = est.A @ est.C
    est.A = sp.csc_matrix(est.A @ sp.diags([2.0, 0.5, 3.0]))
    est.C = est.C / np.array([2.0, 0.5, 3.0])[:, None]
    out = normalize_footprints(est)
    np.testing.assert_allclose(out.A @ out.C, AC, rtol=1e-5, atol=1e-6)
    norms = np.sqrt(np.asarray(out.A.multiply(out.A).sum(0))).ravel()
    np.testing.assert_allclose(norms, 1, rtol=1e-6)
    save_estimates(tmp_path / "n.hdf5", est, params={}, mmap_file="m")
    back, _, _ = load_estimates(tmp_path / "n.hdf5")
    np.testing.assert_allclose(back.C, out.C)


def test_zero_components_and_no_temp_left(tmp_path, make_estimates):
    est = make_estimates(K=0, T=10)
    path = tmp_path / "z.hdf5"
    save_estimates(path, est, params=PARAMS, mmap_file="m")
    back, _, _ = load_estimates(path)
    assert back.n_components == 0 and back.C.shape == (0, 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z.hdf5"]


def test_reader_ignores_unknown_keys_and_keeps_extra(tmp_path, make_estimates):
    est = make_estimates(K=3, T=20)
    est.extra = {"merged_pairs": np.array([[0, 1]]), "note": "refit"}
    path = tmp_path / "x.hdf5"
    save_estimates(path, est, params=PARAMS, mmap_file="m.mmap")
    with h5py.File(path, "r+") as f:  # what a CaImAn-written file may also hold
        f["estimates"].attrs["some_string"] = "abc"
        f["estimates/discarded_components/C"] = np.zeros((1, 20))
        f["estimates/optional_outputs"] = "NoneType"
        f["remove_very_bad_comps"] = False
    back, params, extra = load_estimates(path)
    assert back.n_components == 3 and params["workflow"]["event_threshold"] == 0.0
    np.testing.assert_array_equal(back.extra["merged_pairs"], [[0, 1]])
    assert back.extra["note"] == "refit"


def test_our_keys_in_caiman_groups_stay_out_of_params(tmp_path, make_estimates):
    """quality.max_event_pval is ours: CaImAn's loader must not see it under /params."""
    est = make_estimates(K=2, T=20)
    params = {"quality": {"min_SNR": 2.5, "max_event_pval": 0.01}, "workflow": {"refit": False}}
    path = tmp_path / "x.hdf5"
    save_estimates(path, est, params=params, mmap_file="m.mmap")
    with h5py.File(path, "r+") as f:
        assert set(f["params/quality"]) == {"min_SNR"}
        assert float(f["cellextract/params/quality/max_event_pval"][()]) == 0.01
        del f["cellextract"].attrs["params_json"]      # rebuilt from the groups
    _, back, _ = load_estimates(path)
    assert back["quality"] == {"min_SNR": 2.5, "max_event_pval": 0.01}
    assert back["workflow"] == {"refit": False}
