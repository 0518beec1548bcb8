"""Rule cnmf_fit: CNMF / CNMF-E source extraction."""
from cellextract.pipeline.glue import run_stage
from cellextract.pipeline import stages

run_stage("cnmf_fit", snakemake.log[0], stages.cnmf_fit,  # noqa: F821
          snakemake.input.series, snakemake.input.motion,  # noqa: F821
          snakemake.output.fit, snakemake.output.summary, snakemake.params.p,  # noqa: F821
          n_processes=snakemake.threads)  # noqa: F821
