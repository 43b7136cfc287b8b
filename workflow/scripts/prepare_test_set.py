"""Generate a task's fixed test set."""

from stn.evaluation import prepare_test_set
from stn.job import job

with job(snakemake.log[0]):
    print(prepare_test_set(snakemake.params.config, snakemake.output[0]))
