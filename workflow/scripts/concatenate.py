"""Rule concatenate: validate the series, write series.json."""
from cellextract.pipeline.glue import run_stage
from cellextract.pipeline import stages

run_stage("concatenate", snakemake.log[0], stages.concatenate,  # noqa: F821
          list(snakemake.input), snakemake.output.series)  # noqa: F821
