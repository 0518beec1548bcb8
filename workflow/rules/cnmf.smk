# Stage 3: CNMF / CNMF-E source extraction from the memmap.


rule cnmf_fit:
    conda:
        "../../envs/cnmf.yaml"
    input:
        series=res("{series}", "series.json"),
        motion=res("{series}", "motion"),
    output:
        fit=res("{series}", "cnmf", "fit.hdf5"),
        summary=res("{series}", "cnmf", "summary_images.npz"),
    params:
        p=stage_params("cnmf"),
    log:
        res("{series}", "logs", "cnmf_fit.log"),
    threads: ce.threads(config)
    resources:
        mem_mb=lambda wildcards, input, attempt: ce.mem_mb("cnmf", input.series, attempt),
        runtime=lambda wildcards, input, attempt: ce.runtime_min("cnmf", input.series, attempt),
    script:
        "../scripts/cnmf_fit.py"
