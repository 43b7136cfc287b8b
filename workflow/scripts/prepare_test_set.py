"""Generate a task's fixed test set."""

from stn.evaluation import prepare_test_set
from stn.io import output_to

with output_to(snakemake.log[0]):
    key = snakemake.params.key
    config = {"data": {**key["data"], "root": snakemake.params.root}, "task": key["task"]}
    print(prepare_test_set(config, snakemake.output[0]))
