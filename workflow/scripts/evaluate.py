"""Rule evaluate: automated accept / reject of components."""
from cellextract.pipeline.glue import run_stage
from cellextract.pipeline import stages

run_stage("evaluate", snakemake.log[0], stages.evaluate,  # noqa: F821
          snakemake.input.series, snakemake.input.fit, snakemake.input.motion,  # noqa: F821
          snakemake.output.model, snakemake.params.p,  # noqa: F821
          n_processes=snakemake.threads)  # noqa: F821
