# The demo movie, simulated on demand so a fresh clone runs end to end.
import sys


rule simulate_demo:
    conda:
        "../../envs/io_motion.yaml"
    output:
        movie="demo/data/demo_1p.tif",
        truth="demo/data/demo_1p_truth.h5",
    log:
        "demo/logs/simulate_demo.log",
    params:
        python=sys.executable,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.python} -m cellextract.cli simulate --kind 1p --dims 128 128 --frames 1000 --neurons 40 --seed 1 "
        "--out {output.movie} > {log} 2>&1"
