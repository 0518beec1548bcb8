# Stage 4: automated accept / reject of components.


rule evaluate:
    conda:
        "../../envs/cnmf.yaml"
    input:
        series=res("{series}", "series.json"),
        fit=res("{series}", "cnmf", "fit.hdf5"),
        motion=res("{series}", "motion"),
    output:
        model=res("{series}", "caiman_output.hdf5"),
    params:
        p=stage_params("evaluate"),
    log:
        res("{series}", "logs", "evaluate.log"),
    threads: ce.threads(config)
    resources:
        mem_mb=lambda wildcards, input, attempt: ce.mem_mb("evaluate", input.fit, attempt),
        runtime=lambda wildcards, input, attempt: ce.runtime_min("evaluate", input.fit, attempt),
    script:
        "../scripts/evaluate.py"
