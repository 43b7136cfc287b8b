"""The rotation analysis of one checkpoint on its task's fixed test set."""

from stn.evaluation import analyse_rotations
from stn.job import job

with job(snakemake.log[0]):
    result = analyse_rotations(
        snakemake.input.model,
        snakemake.input.test_set,
        snakemake.output[0],
        angles=snakemake.params.angles,
        images=snakemake.params.images,
        device=snakemake.params.device,
    )
    run = f"{result['network']} {result['task']} seed {result['seed']}"
    if result["status"] == "diverged":
        print(f"{run}: skipped, its training diverged (no rotation analysis)")
    else:
        print(f"{run}: spread {result['spread']}")
