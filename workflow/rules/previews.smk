# Stage 6: preview images (initialisation images, cells and traces per file and for the
# series, events, motion) in results/{series}/previews/.


rule previews:
    conda:
        "../../envs/previews.yaml"
    input:
        series=res("{series}", "series.json"),
        model=res("{series}", "caiman_output.hdf5"),
        summary=res("{series}", "cnmf", "summary_images.npz"),
        motion=res("{series}", "motion_summary"),
    output:
        previews=report(
            directory(res("{series}", "previews")),
            patterns=["{name}.png"],
            caption="../report/previews.rst",
            category="Previews",
            subcategory="{series}",
        ),
    params:
        p=stage_params("previews"),
    log:
        res("{series}", "logs", "previews.log"),
    threads: 1
    resources:
        mem_mb=lambda wildcards, input, attempt: ce.mem_mb("previews", input.model, attempt),
        runtime=20,
    script:
        "../scripts/previews.py"
