# cellextract: calcium-imaging cell extraction (see README.md and docs/architecture.md).
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/concatenate.smk"
include: "workflow/rules/motion.smk"
include: "workflow/rules/cnmf.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/previews.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
