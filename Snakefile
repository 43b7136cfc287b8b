# Regenerates the tables and figures of Finnveden, Jansson & Lindeberg (ICPR 2020):
#   snakemake --cores all                               (config/config.yaml, CPU demo)
#   snakemake --cores all --configfile config/paper.yaml (the paper's setup)
from snakemake.utils import min_version

min_version("8.20")


# config/config.yaml unless --configfile is given, which then replaces it (not merged)
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/provenance.smk"


# On a cluster these run where Snakemake runs (a login node): downloads need the network that
# compute nodes often lack, and the tables are quick reads of the runs' metrics.
localrules:
    download,
    table,
    depth_figure,
    rotation_report,
    training_figure,
    stability,
    provenance,


rule all:
    default_target: True
    input:
        report_outputs(),
        "results/provenance.json",
