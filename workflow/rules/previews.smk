# Stage 6: preview images (initialisation images, cells and traces, events, motion).


rule previews:
    conda:
        "../../envs/previews.yaml"
    input:
        model=res("{series}", "caiman_output.hdf5"),
        summary=res("{series}", "cnmf", "summary_images.npz"),
        series=res("{series}", "series.json"),
        motion=res("{series}", "motion"),
    output:
        init=report(
            res("{series}", "previews", "initialization_images.png"),
            caption="../report/init_images.rst",
            category="Initialisation",
        ),
        motion=report(
            res("{series}", "previews", "motion.png"),
            caption="../report/motion.rst",
            category="Motion correction",
        ),
        cells=report(
            directory(res("{series}", "previews", "cells")),
            patterns=["{name}.png"],
            caption="../report/cells.rst",
            category="Cells",
        ),
        events=report(
            res("{series}", "previews", "events.png"),
            caption="../report/events.rst",
            category="Events",
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
