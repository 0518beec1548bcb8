"""Defaults equal the spec's analysis table; presets; pair coercion; gSiz derivation."""

from dataclasses import fields

import pytest

from cellextract.params import GROUPS, PRESETS, SPEC_DEFAULTS, flat_keys, resolve_params

# The spec's analysis table (values after resolution; fr auto without metadata -> 30 Hz).
SPEC_TABLE = {
    "data.fr": 30.0, "data.decay_time": 0.4, "data.dxy": (1.0, 1.0),
    "motion.motion_correct": True, "motion.pw_rigid": False, "motion.gSig_filt": (3, 3),
    "motion.max_shifts": (5, 5), "motion.strides": (48, 48), "motion.overlaps": (24, 24),
    "motion.max_deviation_rigid": 3, "motion.border_nan": "copy",
    "preprocess.p": 1, "temporal.p": 1, "init.K": None, "init.gSig": (3, 3), "init.gSiz": (7, 7),
    "merging.merge_thr": 0.7, "patch.rf": 40, "patch.stride": 20, "init.tsub": 2, "init.ssub": 1,
    "init.method_init": "corr_pnr", "init.min_corr": 0.85, "init.min_pnr": 12, "init.ssub_B": 2,
    "init.ring_size_factor": 1.4, "temporal.method_deconvolution": "oasis",
    "spatial.update_background_components": True, "patch.del_duplicates": True, "init.nb": 0,
    "patch.low_rank_background": False, "patch.nb_patch": 0, "init.rolling_sum": True,
    "patch.only_init": True, "init.normalize_init": False, "init.center_psf": True,
    "temporal.bas_nonneg": False, "patch.border_pix": 0, "workflow.refit": False,
    "quality.SNR_lowest": 0.5, "quality.min_SNR": 3, "quality.rval_lowest": -1,
    "quality.rval_thr": 0.85, "quality.use_cnn": False, "quality.cnn_lowest": 0.1,
    "quality.gSig_range": None, "quality.min_cnn_thr": 0.9, "patch.n_processes": 7,
    # CaImAn extras and workflow options
    "motion.niter_rig": 1, "motion.upsample_factor_grid": 4, "preprocess.noise_method": "mean",
    "preprocess.noise_range": (0.25, 0.5), "workflow.event_threshold": 0.0,
    "workflow.export_nwb": False, "workflow.temp_memmap": False, "workflow.overwrite_params": False,
}


def _get(params, name):
    group, key = name.split(".")
    return getattr(getattr(params, group), key)


def test_defaults_equal_spec_table():
    p = resolve_params(n_cpus=64)
    for name, want in SPEC_TABLE.items():
        got = _get(p, name)
        assert got == want and type(got) is type(want) or (
            isinstance(want, (int, float)) and not isinstance(want, bool) and got == want), name
    assert p.sources["init.min_pnr"] == "default"
    assert p.sources["data.fr"] == "auto:default"


def test_spec_defaults_cover_every_field_and_nothing_else():
    for group, cls in GROUPS.items():
        assert set(SPEC_DEFAULTS[group]) == {f.name for f in fields(cls)}, group
    assert set(SPEC_DEFAULTS) == set(GROUPS)


def test_every_value_has_a_source():
    p = resolve_params()
    for group, d in p.to_dict().items():
        for key in d:
            assert p.sources[f"{group}.{key}"] in {"default", "derived", "auto:default"}


@pytest.mark.parametrize("preset", ["1p", "2p"])
def test_presets_apply_spec_columns(preset):
    p = resolve_params(preset=preset)
    flat = flat_keys()
    for key, want in PRESETS[preset].items():
        got = getattr(getattr(p, flat[key]), key)
        if want == "auto":
            want = None
        elif key == "gSig_filt" and want is not None:
            want = (want, want)
        assert got == want, key
        assert p.sources[f"{flat[key]}.{key}"] == f"preset:{preset}"


def test_table_beats_preset():
    p = resolve_params(preset="2p", table={"K": 7, "nb": 1})
    assert p.init.K == 7 and p.init.nb == 1
    assert p.sources["init.K"] == "table" and p.sources["patch.nb_patch"] == "preset:2p"


@pytest.mark.parametrize("name,value,want", [
    ("dxy", 2, (2.0, 2.0)), ("gSig", 4, (4, 4)), ("gSiz", 11, (11, 11)), ("max_shifts", 8, (8, 8)),
    ("strides", 64, (64, 64)), ("overlaps", [16, 20], (16, 20)), ("gSig_filt", 5, (5, 5)),
    ("gSig_filt", None, None), ("gSig", 4.0, (4, 4)), ("max_shifts", "6,7", (6, 7)),
    ("gSig_range", [3, 4, 5], (3, 4, 5)), ("gSig_range", 4, (4,)),
])
def test_pair_and_list_coercion(name, value, want):
    p = resolve_params(table={name: value})
    assert getattr(getattr(p, flat_keys()[name]), name) == want


def test_gsiz_derived_from_gsig_and_forced_odd():
    p = resolve_params(table={"gSig": [4, 5]})
    assert p.init.gSiz == (9, 11) and p.sources["init.gSiz"] == "derived"
    q = resolve_params(table={"gSig": 4, "gSiz": [8, 9]})
    assert q.init.gSiz == (9, 9) and q.sources["init.gSiz"] == "derived"
    r = resolve_params(table={"gSig": 4, "gSiz": 13})
    assert r.init.gSiz == (13, 13) and r.sources["init.gSiz"] == "table"


def test_transient_test_on_for_1p_off_for_2p():
    assert resolve_params(preset="1p").quality.max_event_pval == 0.01
    assert resolve_params(preset="2p").quality.max_event_pval is None
    assert resolve_params(preset="2p", table={"max_event_pval": 0.05}).quality.max_event_pval == 0.05
    assert resolve_params(table={"max_event_pval": None}).quality.max_event_pval is None


@pytest.mark.parametrize("bad", [-0.1, 1.5, "often"])
def test_transient_test_bad_value_names_the_key(bad):
    from cellextract.errors import ParameterError
    with pytest.raises(ParameterError, match="max_event_pval"):
        resolve_params(table={"max_event_pval": bad})
