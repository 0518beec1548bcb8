"""Precedence, the overwrite flag, 'auto' values, consistency rules and shipped files."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from cellextract.errors import ParameterError
from cellextract.params import resolve_params

_SHARED = next((p for p in (Path(__file__).resolve().parents[2].parent / "shared",
                             Path("/work/shared")) if p.is_dir()), Path("/work/shared"))


SHARED = _SHARED / "params"
REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path, doc, name="p.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_file_overrides_table_only_with_overwrite_flag(tmp_path, caplog):
    f = _write(tmp_path, {"init": {"gSig": [5, 5], "min_pnr": 8}})
    with caplog.at_level(logging.WARNING, logger="cellextract"):
        p = resolve_params(table={"gSig": 4, "min_corr": 0.7}, params_file=f)
    assert p.init.gSig == (4, 4) and p.init.min_pnr == 12 and p.sources["init.gSig"] == "table"
    assert any("ignored" in r.getMessage() and str(f) in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cellextract"):
        q = resolve_params(table={"gSig": 4, "min_corr": 0.7}, params_file=f, overwrite_params=True)
    assert not any("ignored" in r.getMessage() for r in caplog.records)
    assert q.init.gSig == (5, 5) and q.sources["init.gSig"] == f"file:{f}"
    assert q.init.min_pnr == 8 and q.init.min_corr == 0.7 and q.sources["init.min_corr"] == "table"
    assert q.init.gSiz == (11, 11) and q.workflow.overwrite_params is True


def test_overwrite_flag_from_table_and_flat_file(tmp_path):
    f = _write(tmp_path, {"gSig": 6, "merge_thr": 0.9})
    p = resolve_params(table={"overwrite_params": "true", "merge_thr": 0.5}, params_file=f)
    assert p.merging.merge_thr == 0.9 and p.init.gSig == (6, 6)


def test_grouped_table_and_qualified_names():
    p = resolve_params(table={"init": {"min_pnr": 9}, "quality.min_SNR": 2.5, "rf": None})
    assert p.init.min_pnr == 9 and p.quality.min_SNR == 2.5 and p.patch.rf is None


def test_fr_auto_from_metadata_and_fallback(caplog):
    p = resolve_params(metadata_fr=19.8)
    assert p.data.fr == pytest.approx(19.8) and p.sources["data.fr"] == "auto:metadata"
    with caplog.at_level(logging.WARNING, logger="cellextract"):
        q = resolve_params(metadata_fr=None)
    assert q.data.fr == 30.0 and q.sources["data.fr"] == "auto:default"
    assert any("30" in r.getMessage() and "fr" in r.getMessage() for r in caplog.records)
    assert resolve_params(metadata_fr=np.float32(20.0)).data.fr == 20.0
    assert resolve_params(metadata_fr=float("nan")).sources["data.fr"] == "auto:default"
    assert resolve_params(metadata_fr=0.0).data.fr == 30.0
    r = resolve_params(table={"fr": 15}, metadata_fr=19.8)
    assert r.data.fr == 15.0 and r.sources["data.fr"] == "table"


def test_k_auto_for_corr_pnr_and_required_for_greedy_roi():
    assert resolve_params(table={"K": "auto"}).init.K is None
    assert resolve_params(table={"K": None}).init.K is None
    with pytest.raises(ParameterError, match=r"init\.K is required for method_init='greedy_roi'.*K=4"):
        resolve_params(table={"method_init": "greedy_roi"})
    assert resolve_params(table={"method_init": "greedy_roi", "K": 5}).init.K == 5


def test_sparse_nmf_is_normalised():
    p = resolve_params(table={"method_init": "sparse_NMF", "K": 10})
    assert p.init.method_init == "sparse_nmf"


def test_nb_zero_forces_ring_model_settings(caplog):
    with caplog.at_level(logging.WARNING, logger="cellextract"):
        p = resolve_params(table={"nb": 0, "nb_patch": 2, "low_rank_background": True,
                                  "normalize_init": True})
    assert p.patch.nb_patch == 0 and p.patch.low_rank_background is False
    assert p.init.normalize_init is False
    assert {p.sources[k] for k in ("patch.nb_patch", "patch.low_rank_background",
                                   "init.normalize_init")} == {"derived"}
    assert len(caplog.records) >= 3


def test_low_rank_background_null_derives_from_nb():
    p = resolve_params(table={"nb": 2, "low_rank_background": None})
    assert p.patch.low_rank_background is True and p.sources["patch.low_rank_background"] == "derived"
    q = resolve_params(table={"nb": 0, "low_rank_background": None})
    assert q.patch.low_rank_background is False
    g = resolve_params(table={"nb": 1, "method_init": "greedy_roi", "K": 3, "normalize_init": True})
    assert g.init.normalize_init is True  # no ring model with nb > 0


def test_n_processes_capped_at_cpus():
    assert resolve_params(n_cpus=3).patch.n_processes == 3
    assert resolve_params(n_cpus=16).patch.n_processes == 7
    p = resolve_params(table={"n_processes": None}, n_cpus=5)
    assert p.patch.n_processes == 5 and p.sources["patch.n_processes"] == "derived"
    import os
    assert resolve_params(table={"n_processes": 1000}).patch.n_processes == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value,want", [(True, True), (False, False), ("copy", "copy"),
                                        ("min", "min"), ("True", True), ("False", False)])
def test_border_nan_values(value, want):
    got = resolve_params(table={"border_nan": value}).motion.border_nan
    assert got == want and type(got) is type(want)


def test_p_sets_both_groups(tmp_path):
    p = resolve_params(table={"p": 2})
    assert p.preprocess.p == 2 and p.temporal.p == 2
    f = _write(tmp_path, {"temporal": {"p": 0}})
    q = resolve_params(table={"p": 2}, params_file=f, overwrite_params=True)
    assert q.preprocess.p == 0 and q.temporal.p == 0
    assert q.sources["preprocess.p"] == f"file:{f}"
    g = _write(tmp_path, {"preprocess": {"p": 2}, "temporal": {"p": 1}}, "g.json")
    r = resolve_params(params_file=g, overwrite_params=True)
    assert (r.preprocess.p, r.temporal.p) == (2, 1)


@pytest.mark.parametrize("name", ["params_demo_pipeline", "params_demo_pipeline_cnmfE",
                                  "params_normcorre", "params_source_extraction"])
def test_shared_caiman_files_load(name):
    path = SHARED / f"{name}.json"
    if not path.exists():
        pytest.skip(f"{path} not present")
    raw = json.loads(path.read_text())
    p = resolve_params(params_file=path, overwrite_params=True)
    for group, d in raw.items():
        for key, value in d.items():
            if key == "nb":
                group = "init"
            got = getattr(getattr(p, group), key)
            if value is None:
                continue  # K auto / gSig_filt none / low_rank_background derived
            want = tuple(value) if isinstance(value, list) else value
            if key in ("dxy", "gSig", "gSiz", "max_shifts", "strides", "overlaps") and \
                    not isinstance(value, list):
                want = (value, value)
            assert got == want, f"{group}.{key}"


def test_demo_pipeline_values():
    p = resolve_params(params_file=SHARED / "params_demo_pipeline.json", overwrite_params=True)
    assert p.init.method_init == "greedy_roi" and p.init.K == 4 and p.init.gSiz == (9, 9)
    assert p.motion.gSig_filt is None and p.patch.low_rank_background is True
    e = resolve_params(params_file=SHARED / "params_demo_pipeline_cnmfE.json", overwrite_params=True)
    assert e.init.K is None and e.patch.low_rank_background is False and e.data.fr == 10.0


@pytest.mark.parametrize("name", ["1p", "2p"])
def test_shipped_presets_load(name):
    path = REPO / "config" / "params" / f"{name}.json"
    p = resolve_params(params_file=path, overwrite_params=True, preset=name)
    assert p.data.fr == (10.0 if name == "1p" else 30.0)
    assert p.init.method_init == ("corr_pnr" if name == "1p" else "greedy_roi")
