"""Command-line interface: ``cellextract run | params | simulate | score | train-classifier``.

User errors (bad file, bad parameter) print one line ``error: ...`` and exit with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

from cellextract.errors import CellextractError

STAGES = ("concatenate", "motion_correct", "cnmf_fit", "evaluate", "export_cellsets",
          "output_metadata", "previews", "resolve_params", "export_nwb")


def repo_root() -> Path:
    """Folder holding the ``Snakefile`` (the project checkout; override with CELLEXTRACT_WORKFLOW)."""
    env = os.environ.get("CELLEXTRACT_WORKFLOW")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[2]


def _series_name(movies: list[str]) -> str:
    stem = Path(movies[0]).name.split(".")[0]
    clean = "".join(c if (c.isalnum() or c in "_-") else "_" for c in stem)
    return clean if clean and clean[0].isalnum() else f"s{clean}"


def _add_param_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params-file", help="CaImAn-style JSON parameter file")
    p.add_argument("--overwrite-params", action="store_true",
                   help="let the parameter file override the table values (--set)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="an analysis-table value, e.g. --set gSig=4 --set min_pnr=10 (repeatable)")
    p.add_argument("--preset", choices=("1p", "2p"), default="1p",
                   help="the spec's 1P or 2P default column (default 1p)")


def cmd_params(args) -> int:
    from cellextract.params import parse_set_args, resolve_params

    params = resolve_params(table=parse_set_args(args.sets), params_file=args.params_file,
                            overwrite_params=args.overwrite_params, preset=args.preset,
                            metadata_fr=args.fr)
    if args.json:
        import json

        print(json.dumps({"params": params.to_dict(), "sources": params.sources}, indent=2))
    else:
        print(params.report())
    return 0


def cmd_run(args) -> int:
    from cellextract.io import load_series
    from cellextract.params import parse_set_args
    from cellextract.pipeline.config import resolve_from_config

    movies = [str(Path(m).resolve()) for m in args.movies]
    info = load_series(movies)  # validate before starting anything
    table = parse_set_args(args.sets)
    cfg_kwargs = dict(params=table, preset=args.preset,
                      params_file=str(Path(args.params_file).resolve()) if args.params_file else None,
                      overwrite_params=args.overwrite_params, n_processes=args.cores_n,
                      temp_memmap=args.temp_memmap, export_nwb=args.export_nwb)
    resolve_from_config(dict(cfg_kwargs), metadata_fr=info.fr)  # validate parameters early
    name = args.name or _series_name(movies)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        return _run_snakemake(args, out, name, movies, cfg_kwargs)


@contextlib.contextmanager
def _exclusive(out: Path):
    """Hold an OS lock on ``out`` for the run; clear Snakemake locks a killed run left.

    The OS releases the lock when its holder dies (even by SIGKILL), so a Snakemake lock
    found while we hold ours is stale and is removed: the same command resumes a killed run.
    """
    fh = open(out / ".cellextract.lock", "w")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CellextractError(f"{out}: another cellextract run is using this folder") from None
        shutil.rmtree(out / ".snakemake" / "locks", ignore_errors=True)
        yield
    finally:
        fh.close()


def _run_snakemake(args, out: Path, name: str, movies: list[str], cfg_kwargs: dict) -> int:
    from cellextract.pipeline.config import write_run_config

    # a dry run must not replace the config of the last real run
    cfg_name = f"{name}.dry-run.yaml" if args.dry_run else f"{name}.yaml"
    cfg_path = write_run_config(out / "config" / cfg_name, series={name: movies},
                                results=".", **cfg_kwargs)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo_root() / "Snakefile"),
           "--configfile", str(cfg_path), "--directory", str(out),
           "--cores", str(args.cores), "--rerun-incomplete", "--printshellcmds"]
    if args.profile:
        cmd += ["--profile", args.profile]
    if args.until:
        cmd += ["--until", args.until]
    if args.forcerun:
        cmd += ["--forcerun", *args.forcerun]
    if args.dry_run:
        cmd += ["--dry-run"]
    cmd += args.snakemake_args
    print("running:", " ".join(cmd), file=sys.stderr)
    rc = subprocess.call(cmd, cwd=str(out))
    if rc == 0 and args.report and not args.dry_run:
        report = Path(args.report).resolve()
        base = [c for c in cmd if c not in ("--rerun-incomplete", "--printshellcmds")]
        rc = subprocess.call(base + ["--report", str(report)], cwd=str(out))
    return rc


def cmd_simulate(args) -> int:
    from cellextract.simulate import write_simulation

    kw = dict(kind=args.kind, dims=tuple(args.dims), frames=args.frames,
              n_neurons=args.neurons, fr=args.fr, motion=args.motion, max_shift=args.max_shift,
              seed=args.seed)
    if args.preset:  # the preset fixes kind/size/neurons/rate; motion and seed still apply
        kw = dict(preset=args.preset, motion=args.motion, max_shift=args.max_shift,
                  seed=args.seed)
    paths = write_simulation(args.out, parts=args.parts, truth_path=args.truth, **kw)
    for p in paths:
        print(p)
    return 0


def cmd_score(args) -> int:
    import json

    from cellextract.export.caiman_hdf5 import load_estimates
    from cellextract.simulate import load_truth, score

    est, _, _ = load_estimates(args.model)
    if args.accepted_only and est.idx_components is not None:
        est = est.select(est.idx_components)
    result = score(est.A, est.dims, load_truth(args.truth), C_found=est.C, S_found=est.S)
    print(json.dumps({k: v for k, v in result.items() if not hasattr(v, "__len__")}, indent=2,
                     default=float))
    return 0


def cmd_train(args) -> int:
    from cellextract.evaluate.train import main as train_main

    return int(train_main(args.rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cellextract", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the pipeline on one movie or a movie series")
    r.add_argument("movies", nargs="+", help="movie file(s) of one series (isxd, tif, tiff, avi)")
    r.add_argument("--name", help="series name (default: first file's stem)")
    r.add_argument("--out", default="results", help="output folder (default ./results)")
    _add_param_args(r)
    r.add_argument("--cores", default="all", help="cores for Snakemake (default all)")
    r.add_argument("--n-processes", dest="cores_n", type=int, default=2,
                   help="worker processes per stage (default 2)")
    r.add_argument("--profile", help="Snakemake profile folder (e.g. profiles/slurm)")
    r.add_argument("--until", choices=STAGES, help="stop after this stage")
    r.add_argument("--forcerun", nargs="+", choices=STAGES, help="rerun these stages")
    r.add_argument("--temp-memmap", action="store_true", help="delete the memmap at the end")
    r.add_argument("--export-nwb", action="store_true", help="also write cells.nwb")
    r.add_argument("-n", "--dry-run", action="store_true", help="show the plan only")
    r.add_argument("--report", metavar="HTML", help="also write Snakemake's HTML report here")
    r.set_defaults(func=cmd_run)

    p = sub.add_parser("params", help="print the resolved parameters and their sources")
    _add_param_args(p)
    p.add_argument("--fr", type=float, default=None, help="frame rate from metadata (for fr=auto)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_params)

    s = sub.add_parser("simulate", help="write a synthetic movie with ground truth")
    s.add_argument("--kind", choices=("1p", "2p"), default="1p")
    s.add_argument("--dims", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    s.add_argument("--frames", type=int, default=1000)
    s.add_argument("--neurons", type=int, default=40)
    s.add_argument("--fr", type=float, default=None, help="Hz (default 10 for 1p, 30 for 2p)")
    s.add_argument("--preset", choices=("bench_1p", "bench_2p"), default=None,
                   help="benchmark preset (sets kind, size, neurons, rate)")
    s.add_argument("--motion", choices=("none", "rigid", "pw_rigid"), default="none")
    s.add_argument("--max-shift", type=float, default=5.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--parts", type=int, default=1, help="split into a series of this many files")
    s.add_argument("--truth", default=None, help="ground-truth HDF5 (default <stem>_truth.h5)")
    s.add_argument("--out", required=True, help="movie path (.tif, .isxd, .avi)")
    s.set_defaults(func=cmd_simulate)

    c = sub.add_parser("score", help="score a CaImAn HDF5 result against simulator ground truth")
    c.add_argument("model", help="caiman_output.hdf5 or cnmf/fit.hdf5")
    c.add_argument("truth", help="ground-truth HDF5 written by `cellextract simulate`")
    c.add_argument("--accepted-only", action="store_true", help="score accepted components only")
    c.set_defaults(func=cmd_score)

    t = sub.add_parser("train-classifier", help="train the component classifier (CNN)")
    t.add_argument("rest", nargs=argparse.REMAINDER)
    t.set_defaults(func=cmd_train)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cellextract`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:  # everything after -- goes to Snakemake unchanged
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    args.snakemake_args = extra
    try:
        return int(args.func(args) or 0)
    except CellextractError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
