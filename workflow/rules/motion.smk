# Stage 2: NoRMCorre motion correction -> CaImAn memmap + shifts (one folder per series).
# The folder holds {series}_d1_{H}_d2_{W}_d3_1_order_C_frames_{T}.mmap, shifts.csv,
# template.npy, motion.json and, for piecewise-rigid, shifts_pw.npz.


rule motion_correct:
    conda:
        "../../envs/io_motion.yaml"
    input:
        series=res("{series}", "series.json"),
    output:
        motion=ce.maybe_temp(config, directory(res("{series}", "motion"))),
    params:
        p=stage_params("motion"),
    log:
        res("{series}", "logs", "motion_correct.log"),
    threads: ce.threads(config)
    resources:
        mem_mb=lambda wildcards, input, threads, attempt: ce.mem_mb("motion", input.series, attempt, threads),
        runtime=lambda wildcards, input, attempt: ce.runtime_min("motion", input.series, attempt),
    script:
        "../scripts/motion_correct.py"


rule motion_summary:
    # Everything of the motion folder except the memmap (shifts, template, mean images,
    # motion.json), kept when temp_memmap removes the motion folder; the previews read it.
    conda:
        "../../envs/io_motion.yaml"
    input:
        motion=res("{series}", "motion"),
    output:
        summary=directory(res("{series}", "motion_summary")),
    log:
        res("{series}", "logs", "motion_summary.log"),
    threads: 1
    resources:
        mem_mb=200,
        runtime=5,
    shell:
        "(mkdir -p {output.summary} && find {input.motion} -maxdepth 1 -type f ! -name '*.mmap' "
        "! -name '*.partial' -exec cp -p {{}} {output.summary}/ \\;) > {log} 2>&1"
