"""Evaluate one checkpoint on its task's fixed test set."""

from stn.evaluation import evaluate
from stn.io import DamagedFileError, output_to

with output_to(snakemake.log[0]):
    try:
        metrics = evaluate(
            snakemake.input.model, snakemake.input.test_set, snakemake.output[0], snakemake.params.device
        )
    except DamagedFileError as error:  # a damaged checkpoint or test set: which, and how to redo it
        print(f"error: {error}")
        raise SystemExit(f"error: {error}") from None
    print(f"{metrics['network']} {metrics['task']} seed {metrics['seed']}: {metrics['test_error']:.2f}%")
