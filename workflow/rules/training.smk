rule train:
    """Train one network on one task with one seed (resumes after an interruption)."""
    input:
        raw=raw_data,
        code=LIBRARY,
    output:
        model=f"{run_dir('{task}', '{network}', '{seed}')}/model.pt",
    params:
        run=lambda wildcards: run_config(wildcards.task, wildcards.network, wildcards.seed),
    log:
        "logs/train/{task}/{network}/seed{seed}.log",
    benchmark:
        "benchmarks/train/{task}/{network}/seed{seed}.tsv"
    threads: config["resources"]["train_threads"]
    resources:
        gpu=config["resources"]["train_gpus"],
        mem_mb=config["resources"]["train_mem_mb"],
        runtime=config["resources"]["train_runtime"],
    script:
        "../scripts/train.py"
