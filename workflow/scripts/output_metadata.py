"""Rule output_metadata: counts and per-file timing (output_metadata.json)."""
from cellextract.pipeline.glue import run_stage
from cellextract.pipeline import stages

run_stage("output_metadata", snakemake.log[0], stages.output_metadata,  # noqa: F821
          snakemake.input.series, snakemake.input.model, snakemake.output.metadata)  # noqa: F821
