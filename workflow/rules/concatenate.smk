# Stage 1: validate the movie series and describe it (virtual concatenation, no copy).


rule concatenate:
    conda:
        "../../envs/io_motion.yaml"
    input:
        series_files,
    output:
        series=res("{series}", "series.json"),
    log:
        res("{series}", "logs", "concatenate.log"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/concatenate.py"


rule resolve_params:
    conda:
        "../../envs/io_motion.yaml"
    input:
        series=res("{series}", "series.json"),
    output:
        params=report(
            res("{series}", "params.json"),
            caption="../report/params.rst",
            category="Parameters",
            subcategory="{series}",
        ),
    params:
        p=stage_params("all"),
    log:
        res("{series}", "logs", "resolve_params.log"),
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/resolve_params.py"
