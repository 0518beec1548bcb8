"""Rule motion_correct: NoRMCorre registration -> CaImAn memmap + shifts."""
from cellextract.pipeline.glue import run_stage
from cellextract.pipeline import stages

run_stage("motion_correct", snakemake.log[0], stages.motion_correct,  # noqa: F821
          snakemake.input.series, snakemake.output.motion,  # noqa: F821
          snakemake.wildcards.series, snakemake.params.p,  # noqa: F821
          n_processes=snakemake.threads)  # noqa: F821
