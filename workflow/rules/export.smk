# Stage 5: Inscopix cell sets and event sets (one set per input file k, in the user's order),
# output metadata, optional NWB.


rule export_cellsets:
    conda:
        "../../envs/export.yaml"
    input:
        model=res("{series}", "caiman_output.hdf5"),
        series=res("{series}", "series.json"),
    output:
        raw=res("{series}", "cellset_raw.{k}.isxd"),
        denoised=res("{series}", "cellset_denoised.{k}.isxd"),
        events=res("{series}", "neural_events.{k}.isxd"),
    params:
        p=stage_params("export"),
    log:
        res("{series}", "logs", "export_cellsets.{k}.log"),
    threads: 1
    resources:
        mem_mb=lambda wildcards, input, attempt: ce.mem_mb("export", input.model, attempt),
        runtime=30,
    script:
        "../scripts/export_cellsets.py"


rule output_metadata:
    conda:
        "../../envs/export.yaml"
    input:
        model=res("{series}", "caiman_output.hdf5"),
        series=res("{series}", "series.json"),
    output:
        metadata=report(
            res("{series}", "output_metadata.json"),
            caption="../report/output_metadata.rst",
            category="Counts",
            subcategory="{series}",
        ),
    log:
        res("{series}", "logs", "output_metadata.log"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/output_metadata.py"


rule export_nwb:
    conda:
        "../../envs/export.yaml"
    input:
        model=res("{series}", "caiman_output.hdf5"),
        series=res("{series}", "series.json"),
    output:
        nwb=res("{series}", "cells.nwb"),
    log:
        res("{series}", "logs", "export_nwb.log"),
    threads: 1
    resources:
        mem_mb=lambda wildcards, input, attempt: ce.mem_mb("export", input.model, attempt),
        runtime=30,
    script:
        "../scripts/export_nwb.py"
