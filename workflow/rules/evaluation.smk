rule evaluate:
    """Test error of one trained network on its task's fixed test set."""
    input:
        model=rules.train.output.model,
        test_set=rules.test_set.output[0],
        code=LIBRARY,
    output:
        f"{run_dir('{task}', '{network}', '{seed}')}/metrics.json",
    params:
        device=config["device"],
    log:
        "logs/evaluate/{task}/{network}/seed{seed}.log",
    benchmark:
        "benchmarks/evaluate/{task}/{network}/seed{seed}.tsv"
    resources:
        mem_mb=config["resources"]["eval_mem_mb"],
        runtime=config["resources"]["eval_runtime"],
    shell:
        "{PYTHON} -m stn evaluate --checkpoint {input.model} --test-set {input.test_set}"
        " --out {output} --device {params.device} > {log} 2>&1"
