rule download:
    """One raw file of a data set, checksummed; files placed by hand are verified and used."""
    output:
        "resources/data/{dataset}/{file}",
    log:
        "logs/download/{dataset}/{file}.log",
    conda:
        SOFTWARE
    params:
        data=dataset_section,
    script:
        "../scripts/download.py"


rule prepare_data:
    """A data set's raw files verified and prepared once (cached arrays where it has them);
    the manifest records the sizes and the SHA-256 of every raw file used."""
    input:
        raw=dataset_raw_files,
        code=lambda wildcards: data_code(wildcards.dataset),
    output:
        "resources/prepared/{dataset}.json",
    log:
        "logs/prepare/{dataset}.log",
    conda:
        SOFTWARE
    params:
        data=dataset_section,
    script:
        "../scripts/prepare_data.py"


rule test_set:
    """The fixed test set of a task, generated once with its seed, the same for every network."""
    input:
        data=prepared_data,
        code=lambda wildcards: data_code(task_dataset(wildcards.task)),
    output:
        TEST_SET,
    log:
        "logs/test_set/{task}.log",
    # before the trainings it does not block: a training job that finds its test set evaluates
    # its run for the evaluation job (stn.evaluation_memo)
    priority: 1
    conda:
        SOFTWARE
    params:
        config=lambda wildcards: test_set_config(wildcards.task),
    script:
        "../scripts/prepare_test_set.py"
