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
    run = f"{metrics['network']} {metrics['task']} seed {metrics['seed']}"
    if metrics["test_error"] is None:
        print(f"{run}: skipped, its training diverged at step {metrics['diverged_step']} (no test error)")
    else:
        print(f"{run}: {metrics['test_error']:.2f}%")
