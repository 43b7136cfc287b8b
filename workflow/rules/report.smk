rule table:
    """Mean test error and spread over seeds per network and task, beside the paper's."""
    input:
        metrics=lambda wildcards: all_metrics(
            config["report"]["tables"][wildcards.table]["tasks"]
        ),
        code=REPORT_LIBRARY,
    output:
        table=report(
            multiext("results/tables/{table}", ".csv", ".md", ".tex"),
            caption="../report/table.rst",
            category="Tables",
        ),
        figure=report(
            multiext("results/figures/{table}_errors", ".png", ".pdf"),
            caption="../report/errors.rst",
            category="Figures",
        ),
    log:
        "logs/report/{table}.log",
    conda:
        SOFTWARE
    params:
        tasks=lambda wildcards: config["report"]["tables"][wildcards.table]["tasks"],
        networks=config["networks"],
    script:
        "../scripts/table.py"


rule alignment_figure:
    """Test digits under several rotations and scales, and what each network's transformer makes of them."""
    input:
        rotation=lambda wildcards: [
            f"{run_dir(config['report']['alignment']['rotation_task'], network, config['report']['alignment']['seed'])}/model.pt"
            for network in config["report"]["alignment"]["networks"]
        ],
        scale=lambda wildcards: [
            f"{run_dir(config['report']['alignment']['scale_task'], network, config['report']['alignment']['seed'])}/model.pt"
            for network in config["report"]["alignment"]["networks"]
        ],
        code=REPORT_LIBRARY,
    output:
        report(
            multiext("results/figures/mnist_alignment", ".png", ".pdf"),
            caption="../report/alignment.rst",
            category="Figures",
        ),
    log:
        "logs/report/mnist_alignment.log",
    conda:
        SOFTWARE
    params:
        alignment=config["report"]["alignment"],
    script:
        "../scripts/alignment_figure.py"
