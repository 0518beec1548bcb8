"""Rule resolve_params: write params.json (resolved values and their sources)."""
from cellextract.pipeline.glue import run_stage
from cellextract.pipeline import stages

run_stage("resolve_params", snakemake.log[0], stages.resolve_params,  # noqa: F821
          snakemake.input.series, snakemake.params.p, snakemake.output.params)  # noqa: F821
