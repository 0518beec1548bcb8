"""JSON round trip, report, group dicts, flat-name lookup and --set parsing."""

import json

import pytest

from cellextract.errors import ParameterError
from cellextract.params import (
    Params,
    flat_keys,
    group_of,
    parse_set_args,
    parse_value,
    resolve_params,
)


def test_to_json_from_json_round_trip(tmp_path):
    p = resolve_params(table={"gSig": 4, "rf": None, "gSig_filt": None, "border_nan": True,
                              "gSig_range": [3, 5]}, preset="1p", metadata_fr=12.5)
    path = tmp_path / "params.json"
    p.to_json(path)
    doc = json.loads(path.read_text())
    assert set(doc) == {"params", "sources"}
    assert doc["params"]["init"]["gSig"] == [4, 4] and doc["params"]["patch"]["rf"] is None
    assert doc["sources"]["data.fr"] == "auto:metadata"
    q = Params.from_json(path)
    assert q == p
    assert q.init.gSiz == (9, 9) and q.motion.border_nan is True and q.quality.gSig_range == (3, 5)


def test_from_json_does_not_re_resolve(tmp_path):
    p = resolve_params(n_cpus=1)
    path = tmp_path / "params.json"
    p.to_json(path)
    doc = json.loads(path.read_text())
    doc["params"]["patch"]["n_processes"] = 64
    path.write_text(json.dumps(doc))
    assert Params.from_json(path).patch.n_processes == 64


def test_from_json_rejects_incomplete(tmp_path):
    path = tmp_path / "params.json"
    path.write_text(json.dumps({"params": {"init": {"gSig": [3, 3]}}}))
    with pytest.raises(ParameterError, match="lack data.fr"):
        Params.from_json(path)


def test_resolved_file_can_be_used_as_params_file(tmp_path):
    p = resolve_params(table={"min_pnr": 9, "p": 2})
    path = tmp_path / "params.json"
    p.to_json(path)
    q = resolve_params(params_file=path, overwrite_params=True)
    assert q.init.min_pnr == 9 and q.temporal.p == 2


def test_to_dict_is_plain_json_and_group_dict():
    p = resolve_params()
    d = p.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["motion"]["max_shifts"] == [5, 5] and d["init"]["K"] is None
    assert p.group_dict("motion")["max_shifts"] == (5, 5)
    with pytest.raises(ParameterError, match="unknown parameter group 'moton'"):
        p.group_dict("moton")


def test_report_lists_every_value_with_source():
    p = resolve_params(table={"min_pnr": 10})
    lines = p.report().splitlines()
    assert lines[0].split() == ["group", "key", "value", "source"]
    assert len(lines) == 2 + sum(len(g) for g in p.to_dict().values())
    row = next(line for line in lines if " min_pnr " in line)
    assert row.split() == ["init", "min_pnr", "10.0", "table"]


def test_flat_keys_and_primary_groups():
    flat = flat_keys()
    assert flat["gSig"] == "init" and flat["p"] == "preprocess" and flat["nb"] == "init"
    assert flat["merge_thr"] == "merging" and flat["refit"] == "workflow"
    assert group_of("temporal.nb") == ("init", "nb")
    assert group_of("temporal.p") == ("temporal", "p")


@pytest.mark.parametrize("text,want", [
    ("4", 4), ("0.85", 0.85), ("-1", -1), ("1e-3", 0.001), ("true", True), ("False", False),
    ("null", None), ("None", None), ("auto", "auto"), ("[5,5]", [5, 5]), ("5,5", [5, 5]),
    ("(3, 4)", [3, 4]), ("copy", "copy"), ("sparse_NMF", "sparse_NMF"), ("[0.25, 0.5]", [0.25, 0.5]),
])
def test_parse_value(text, want):
    got = parse_value(text)
    assert got == want and type(got) is type(want)


def test_parse_set_args_feeds_resolve_params():
    table = parse_set_args(["gSig=4", "min_pnr=10", "K=auto", "max_shifts=6,7", "rf=None",
                            "pw_rigid=true", "init.ssub=2"])
    assert table == {"gSig": 4, "min_pnr": 10, "K": "auto", "max_shifts": [6, 7], "rf": None,
                     "pw_rigid": True, "init.ssub": 2}
    p = resolve_params(table=table)
    assert p.init.gSig == (4, 4) and p.motion.max_shifts == (6, 7) and p.patch.rf is None
    assert p.init.ssub == 2 and p.motion.pw_rigid is True


def test_text_values_in_table_are_parsed():
    p = resolve_params(table={"gSig": "4", "merge_thr": "0.8", "use_cnn": "False", "gSig_filt": "null"})
    assert p.init.gSig == (4, 4) and p.merging.merge_thr == 0.8 and p.quality.use_cnn is False
    assert p.motion.gSig_filt is None
