"""Unknown names with suggestions and bad values with one-line messages."""

import json

import pytest

from cellextract.errors import ParameterError
from cellextract.params import parse_set_args, resolve_params


def test_unknown_flat_key_suggests_closest():
    with pytest.raises(ParameterError, match=r"unknown parameter 'gsig'.*did you mean 'gSig'"):
        resolve_params(table={"gsig": 4})
    with pytest.raises(ParameterError, match=r"'min_pnrr'.*did you mean 'min_pnr'"):
        resolve_params(table={"min_pnrr": 4})


def test_unknown_key_in_group_of_file(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"init": {"merge_thrs": 0.5}}))
    with pytest.raises(ParameterError, match=rf"{f}.*unknown parameter 'merge_thrs' in group 'init'"):
        resolve_params(params_file=f, overwrite_params=True)
    f.write_text(json.dumps({"quality": {"min_pnr": 5}}))
    with pytest.raises(ParameterError, match=r"'min_pnr' in group 'quality' \(it belongs to group 'init'\)"):
        resolve_params(params_file=f, overwrite_params=True)
    f.write_text(json.dumps({"init": {"gSigg": 5}}))
    with pytest.raises(ParameterError, match=r"did you mean 'gSig'"):
        resolve_params(params_file=f, overwrite_params=True)


def test_unknown_group_suggests_closest(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"motoin": {"pw_rigid": True}}))
    with pytest.raises(ParameterError, match=r"unknown parameter group 'motoin'.*did you mean 'motion'"):
        resolve_params(params_file=f, overwrite_params=True)
    with pytest.raises(ParameterError, match=r"unknown parameter group 'qualty'.*'quality'"):
        resolve_params(table={"qualty.min_SNR": 2})


def test_bad_files(tmp_path):
    with pytest.raises(ParameterError, match="does not exist"):
        resolve_params(params_file=tmp_path / "missing.json", overwrite_params=True)
    f = tmp_path / "bad.json"
    f.write_text('{"init": {"gSig": [3, 3],}}')
    with pytest.raises(ParameterError, match=r"not valid JSON.*line 1"):
        resolve_params(params_file=f, overwrite_params=True)
    f.write_text("[1, 2]")
    with pytest.raises(ParameterError, match="JSON object"):
        resolve_params(params_file=f, overwrite_params=True)
    f.write_text(json.dumps({"init": 5}))
    with pytest.raises(ParameterError, match="group 'init' must be an object"):
        resolve_params(params_file=f, overwrite_params=True)


BAD_VALUES = [
    ({"max_shifts": -1}, r"motion\.max_shifts = -1 is not allowed.*>= 0"),
    ({"max_shifts": [5, 5, 5]}, r"motion\.max_shifts.*exactly 2 values"),
    ({"strides": 24, "overlaps": 24}, r"strides must be larger than overlaps"),
    ({"merge_thr": 1.5}, r"merging\.merge_thr = 1\.5.*in \[0, 1\]"),
    ({"p": 3}, r"preprocess\.p = 3.*in \[0, 2\]"),
    ({"method_deconvolution": "cvxpy"}, r"temporal\.method_deconvolution = 'cvxpy'.*'oasis'"),
    ({"method_init": "graph_nmf"}, r"init\.method_init = 'graph_nmf'.*'corr_pnr', 'greedy_roi', 'sparse_nmf'"),
    ({"border_nan": "nearest"}, r"motion\.border_nan = 'nearest'.*true, false, 'copy' or 'min'"),
    ({"gSig": 2.5}, r"init\.gSig = 2\.5.*integer"),
    ({"pw_rigid": "yes"}, r"motion\.pw_rigid = 'yes'.*true or false"),
    ({"fr": -5}, r"data\.fr = -5.*> 0"),
    ({"K": 0}, r"init\.K = 0.*>= 1.*'auto'"),
    ({"min_corr": -0.1}, r"init\.min_corr = -0\.1.*in \[0, 1\]"),
    ({"rval_thr": 2}, r"quality\.rval_thr = 2.*in \[-1, 1\]"),
    ({"decay_time": 0}, r"data\.decay_time = 0.*> 0"),
    ({"rf": 10, "stride": 20}, r"patch\.stride = 20.*smaller than the patch size 2\*rf = 20"),
    ({"noise_range": [0.5, 0.25]}, r"noise_range.*low < high"),
    ({"gSig": None}, r"init\.gSig = None.*null is not allowed"),
    ({"noise_method": "max"}, r"preprocess\.noise_method = 'max'.*'mean'"),
    ({"n_processes": 0}, r"patch\.n_processes = 0.*>= 1"),
    ({"event_threshold": -1}, r"workflow\.event_threshold = -1.*>= 0"),
    ({"use_cnn": 1}, r"quality\.use_cnn = 1.*true or false"),
]


@pytest.mark.parametrize("table,pattern", BAD_VALUES)
def test_bad_values_are_named(table, pattern):
    with pytest.raises(ParameterError, match=pattern) as info:
        resolve_params(table=table)
    assert "\n" not in str(info.value)


def test_bad_value_in_file_names_file(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"motion": {"strides": [20, 20], "overlaps": [24, 24]}}))
    with pytest.raises(ParameterError, match=rf"strides = \[20, 20\] \(from file:{f}\).*larger than overlaps"):
        resolve_params(params_file=f, overwrite_params=True)
    f.write_text(json.dumps({"init": {"nb": 2}, "temporal": {"nb": 1}}))
    with pytest.raises(ParameterError, match="conflict"):
        resolve_params(params_file=f, overwrite_params=True)


def test_bad_preset():
    with pytest.raises(ParameterError, match=r"preset = '3p'.*'1p', '2p'"):
        resolve_params(preset="3p")


def test_parse_set_args_errors():
    with pytest.raises(ParameterError, match=r"--set 'gSig4': expected key=value"):
        parse_set_args(["gSig4"])
    with pytest.raises(ParameterError, match=r"unknown parameter 'min_snr'.*'min_SNR'"):
        parse_set_args(["min_snr=2"])
