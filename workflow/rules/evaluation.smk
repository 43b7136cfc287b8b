rule evaluate:
    """Test error of one trained network on its task's fixed test set."""
    input:
        model=rules.train.output.model,
        test_set=rules.test_set.output[0],
        code=run_code,
    output:
        f"{run_dir('{task}', '{network}', '{seed}')}/metrics.json",
    log:
        "logs/evaluate/{task}/{network}/seed{seed}.log",
    benchmark:
        "benchmarks/evaluate/{task}/{network}/seed{seed}.tsv"
    conda:
        SOFTWARE
    resources:
        mem_mb=config["resources"]["eval_mem_mb"],
        runtime=config["resources"]["eval_runtime"],
    params:
        device=config["device"],
    script:
        "../scripts/evaluate.py"


rule rotation_analysis:
    """The authors' rotation analysis of one trained network: its test images rotated over a
    full turn, and the rotation its transformers apply to each."""
    input:
        model=rules.train.output.model,
        test_set=rules.test_set.output[0],
        code=run_code,
    output:
        f"{run_dir('{task}', '{network}', '{seed}')}/rotation.json",
    log:
        "logs/rotation/{task}/{network}/seed{seed}.log",
    benchmark:
        "benchmarks/rotation/{task}/{network}/seed{seed}.tsv"
    conda:
        SOFTWARE
    resources:
        mem_mb=config["resources"]["eval_mem_mb"],
        runtime=config["resources"]["eval_runtime"],
    params:
        device=config["device"],
        angles=config["report"]["rotation"]["angles"],
        images=config["report"]["rotation"]["images"],
    script:
        "../scripts/rotation_analysis.py"
