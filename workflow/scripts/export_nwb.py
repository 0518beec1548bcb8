"""Rule export_nwb: the cells as an NWB file."""
from cellextract.pipeline.glue import run_stage
from cellextract.pipeline import stages

run_stage("export_nwb", snakemake.log[0], stages.export_nwb,  # noqa: F821
          snakemake.input.series, snakemake.input.model, snakemake.output.nwb)  # noqa: F821
