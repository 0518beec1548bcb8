"""Fixtures for end-to-end tests: small simulated movies and whole-pipeline runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from wfhelpers import FAST, SMALL, run_cli


@pytest.fixture(scope="session")
def small_movie(tmp_path_factory) -> Path:
    """A 64x64x300 1P movie with 8 neurons (tif) and its ground truth."""
    d = tmp_path_factory.mktemp("movie")
    out = d / "small.tif"
    run_cli("simulate", *SMALL, "--seed", "3", "--out", out)
    return out


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, small_movie) -> Path:
    """The whole pipeline on ``small_movie``; returns the series' results folder."""
    out = tmp_path_factory.mktemp("run")
    run_cli("run", small_movie, "--name", "small", "--out", out, "--cores", "2", *FAST)
    return out / "small"
