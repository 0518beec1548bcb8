"""Per-stage parameters (what reruns when a parameter changes) and resource models."""

import json

import pytest

from cellextract.pipeline import snake


def _cfg(**params):
    return {"series": {"s": ["a.tif"]}, "preset": "1p", "params": params, "n_processes": 2}


def _changed_stages(before: dict, after: dict) -> set[str]:
    return {st for st in snake.STAGE_KEYS if st != "all"
            and snake.stage_params(before, st) != snake.stage_params(after, st)}


@pytest.mark.parametrize("key, value, expected", [
    ("min_SNR", 5.0, {"evaluate"}),
    ("rval_thr", 0.5, {"evaluate"}),
    ("gSig", 4, {"cnmf", "evaluate"}),
    ("min_pnr", 5, {"cnmf"}),
    ("merge_thr", 0.9, {"cnmf"}),
    ("max_shifts", 8, {"motion"}),
    ("pw_rigid", True, {"motion"}),
    ("event_threshold", 2.0, {"export", "previews"}),
    ("fr", 20, {"cnmf", "evaluate", "export", "previews"}),
])
def test_a_parameter_reruns_exactly_its_stages(key, value, expected):
    assert _changed_stages(_cfg(), _cfg(**{key: value})) == expected


def test_n_processes_never_reruns_anything():
    a, b = _cfg(), _cfg()
    b["n_processes"] = 1
    assert _changed_stages(a, b) == set()


def test_auto_frame_rate_is_left_for_the_stage():
    assert snake.stage_params(_cfg(), "cnmf")["data"]["fr"] == "auto"
    assert snake.stage_params(_cfg(fr=15), "cnmf")["data"]["fr"] == 15.0


def test_stage_params_are_json_plain():
    json.dumps(snake.stage_params(_cfg(), "all"))


def test_unknown_stage():
    with pytest.raises(KeyError):
        snake.stage_params(_cfg(), "nope")


def test_memmap_basename_is_caimans():
    info = {"dims": [120, 130], "n_frames": [200, 300]}
    assert snake.memmap_basename("m", info) == "m_d1_120_d2_130_d3_1_order_C_frames_500.mmap"


def test_memory_grows_with_movie_and_attempt(tmp_path):
    small, big = tmp_path / "s.json", tmp_path / "b.json"
    small.write_text(json.dumps({"dims": [64, 64], "n_frames": 100}))
    big.write_text(json.dumps({"dims": [512, 512], "n_frames": 6000}))
    assert snake.mem_mb("cnmf", str(big)) > snake.mem_mb("cnmf", str(small))
    assert snake.mem_mb("cnmf", str(small), attempt=2) > snake.mem_mb("cnmf", str(small))
    assert snake.runtime_min("cnmf", str(big), attempt=2) > snake.runtime_min("cnmf", str(big))


def test_threads_follow_n_processes():
    assert snake.threads({"n_processes": 8}) == 8  # Snakemake caps at --cores locally
    assert snake.threads({"n_processes": 1}) == 1
    assert snake.threads({}) == 1


def test_motion_memory_grows_with_worker_threads_and_is_capped(tmp_path):
    f = tmp_path / "series.json"
    f.write_text(json.dumps({"dims": [512, 512], "n_frames": [3000]}))
    two = snake.mem_mb("motion", str(f), threads=2)
    assert snake.mem_mb("motion", str(f), threads=8) > two >= 1000  # measured peak ~0.9 GB
    g = tmp_path / "long.json"
    g.write_text(json.dumps({"dims": [512, 512], "n_frames": [30000]}))
    assert snake.mem_mb("motion", str(g), threads=2) == two  # the band buffer is capped
