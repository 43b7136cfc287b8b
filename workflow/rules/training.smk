rule train:
    """Train one network on one task with one seed (resumes after an interruption)."""
    input:
        data=prepared_data,
        code=training_code,
    output:
        model=f"{run_dir('{task}', '{network}', '{seed}')}/model.pt",
        log=f"{run_dir('{task}', '{network}', '{seed}')}/train_log.csv",
    log:
        "logs/train/{task}/{network}/seed{seed}.log",
    benchmark:
        "benchmarks/train/{task}/{network}/seed{seed}.tsv"
    conda:
        SOFTWARE
    threads: config["resources"]["train_threads"]
    resources:
        gpu=config["resources"]["train_gpus"],
        gpu_percent=gpu_share(),
        mem_mb=config["resources"]["train_mem_mb"],
        runtime=config["resources"]["train_runtime"],
    params:
        run=lambda wildcards: run_config(
            wildcards.task, wildcards.network, wildcards.seed
        ),
        memo=evaluation_memo,
    script:
        "../scripts/train.py"
