"""Rule export_cellsets: raw / denoised cell sets and the event set of input file k."""
from cellextract.pipeline.glue import run_stage
from cellextract.pipeline import stages

run_stage("export_cellsets", snakemake.log[0], stages.export_cellsets,  # noqa: F821
          snakemake.input.series, snakemake.input.model, int(snakemake.wildcards.k),  # noqa: F821
          snakemake.output.raw, snakemake.output.denoised, snakemake.output.events,  # noqa: F821
          snakemake.params.p)  # noqa: F821
