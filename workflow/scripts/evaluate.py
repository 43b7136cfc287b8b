"""Evaluate one checkpoint on its task's fixed test set, or take the evaluation its training job
made under the same key (stn.evaluation_memo), without importing torch."""

from stn.evaluation_memo import memo_key, remembered
from stn.io import DamagedFileError, save_json
from stn.job import job

with job(snakemake.log[0]):
    model, test_set, device = snakemake.input.model, snakemake.input.test_set, snakemake.params.device
    metrics = remembered(model, memo_key(model, test_set, snakemake.input.code, device))
    if metrics is not None:
        save_json(metrics, snakemake.output[0])
        how = " (evaluated by its training job: same checkpoint, test set, code and device)"
    else:
        from stn.evaluation import evaluate

        try:
            metrics = evaluate(model, test_set, snakemake.output[0], device)
        except DamagedFileError as error:  # a damaged checkpoint or test set: which, and how to redo it
            print(f"error: {error}")
            raise SystemExit(f"error: {error}") from None
        how = ""
    run = f"{metrics['network']} {metrics['task']} seed {metrics['seed']}"
    if metrics["test_error"] is None:
        step = metrics["diverged_step"]
        print(f"{run}: skipped, its training diverged at step {step} (no test error){how}")
    else:
        print(f"{run}: {metrics['test_error']:.2f}%{how}")
