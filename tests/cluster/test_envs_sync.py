"""envs/*.yaml (conda, for `--sdm conda`) stay in sync with pyproject.toml (the pip install).

Fast, no Slurm, no conda needed: only the files are compared.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
ENVS = sorted((REPO / "envs").glob("*.yaml"))
# The kinds of rule named in issue 8, plus the environment that runs Snakemake itself.
EXPECTED_ENVS = {"io_motion.yaml", "cnmf.yaml", "export.yaml", "previews.yaml", "workflow.yaml"}
PROJECT_LINE = "-e ${CELLEXTRACT_ROOT}"


def pyproject_deps() -> dict[str, Requirement]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    reqs = [Requirement(r) for r in data["project"]["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs}


def env_packages(path: Path) -> tuple[dict[str, str | None], list[str]]:
    """{canonical name: pinned version or None} of one env file, and its raw pip lines."""
    env = yaml.safe_load(path.read_text())
    pkgs: dict[str, str | None] = {}
    pip_lines: list[str] = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_lines += [str(x) for x in dep.get("pip", [])]
            continue
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(?:==?\s*([^\s=]+))?\s*$", str(dep))
        assert m, f"{path.name}: cannot parse conda dependency {dep!r}"
        pkgs[canonicalize_name(m.group(1))] = m.group(2)
    for line in pip_lines:
        if line.startswith("-"):  # options and the project itself
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        pinned = spec[0].version if len(spec) == 1 and spec[0].operator == "==" else None
        pkgs[canonicalize_name(req.name)] = pinned
    return pkgs, pip_lines


def test_env_files_exist():
    assert {p.name for p in ENVS} >= EXPECTED_ENVS


@pytest.mark.parametrize("path", ENVS, ids=[p.name for p in ENVS])
def test_env_is_pinned_and_installs_project(path):
    env = yaml.safe_load(path.read_text())
    assert env.get("name", "").startswith("cellextract"), path.name
    assert "conda-forge" in env.get("channels", [])
    pkgs, pip_lines = env_packages(path)
    assert "python" in pkgs and "pip" in pkgs, f"{path.name}: needs python and pip from conda"
    py = pkgs["python"]
    req_py = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert py and Version(py) in SpecifierSet(req_py), f"{path.name}: python={py} vs {req_py}"
    unpinned = [n for n, v in pkgs.items() if v is None and n not in ("pip",)]
    assert not unpinned, f"{path.name}: not pinned with ==: {unpinned}"
    assert PROJECT_LINE in pip_lines, f"{path.name}: must install the project ({PROJECT_LINE})"


def test_every_pyproject_dependency_is_in_an_env():
    union: set[str] = set()
    for path in ENVS:
        union |= set(env_packages(path)[0])
    missing = sorted(set(pyproject_deps()) - union)
    assert not missing, f"pyproject dependencies in no envs/*.yaml: {missing}"


@pytest.mark.parametrize("path", ENVS, ids=[p.name for p in ENVS])
def test_env_versions_satisfy_pyproject(path):
    deps = pyproject_deps()
    bad = []
    for name, version in env_packages(path)[0].items():
        if name in deps and version is not None and not deps[name].specifier.contains(
                Version(version), prereleases=True):
            bad.append(f"{name}=={version} (pyproject: {deps[name]})")
    assert not bad, f"{path.name}: {bad}"


def test_same_package_same_version_everywhere():
    seen: dict[str, dict[str, str]] = {}
    for path in ENVS:
        for name, version in env_packages(path)[0].items():
            if version is not None:
                seen.setdefault(name, {})[path.name] = version
    differing = {n: v for n, v in seen.items() if len(set(v.values())) > 1}
    assert not differing, f"one version per package across envs: {differing}"


def test_rules_reference_existing_env_files():
    rules = sorted((REPO / "workflow" / "rules").glob("*.smk"))
    refs = []
    for smk in rules:
        for m in re.finditer(r"^\s*conda:\s*\n\s*[\"']([^\"']+)[\"']", smk.read_text(), re.M):
            refs.append((smk.name, m.group(1), (smk.parent / m.group(1)).resolve()))
    if not refs:
        pytest.skip("no rule declares conda: yet")
    missing = [(f, ref) for f, ref, p in refs if not p.is_file()]
    assert not missing, f"conda: paths that do not exist: {missing}"
    used = {p.name for _, _, p in refs}
    assert used >= EXPECTED_ENVS - {"workflow.yaml"}, f"env files no rule uses: {EXPECTED_ENVS - used}"
