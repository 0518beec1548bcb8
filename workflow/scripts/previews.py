"""Rule previews: PNG previews of initialisation, cells, events and motion."""
from cellextract.pipeline.glue import run_stage
from cellextract.pipeline import stages

run_stage("previews", snakemake.log[0], stages.previews,  # noqa: F821
          snakemake.input.series, snakemake.input.model, snakemake.input.summary,  # noqa: F821
          snakemake.input.motion, snakemake.output.previews, snakemake.params.p)  # noqa: F821
