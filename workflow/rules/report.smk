rule table:
    """Test error per network and task over seeds, beside the paper's, and the stated orderings."""
    input:
        metrics=lambda wildcards: table_metrics(wildcards.table),
        code=[*REPORT_LIBRARY, PAPER_RESULTS],
    output:
        table=report(
            "results/tables/{table}.html",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
        table_files=multiext("results/tables/{table}", ".csv", ".md", ".tex"),
        contrasts=report(
            "results/tables/{table}_contrasts.html",
            caption="../report/contrasts.rst",
            category="Tables",
            labels={"table": "{table} orderings"},
        ),
        contrasts_files=multiext(
            "results/tables/{table}_contrasts", ".csv", ".md", ".tex"
        ),
        figure=report(
            "results/figures/{table}_errors.png",
            caption="../report/errors.rst",
            category="Figures",
            labels={"figure": "{table} errors"},
        ),
        figure_pdf="results/figures/{table}_errors.pdf",
    log:
        "logs/report/{table}.log",
    conda:
        SOFTWARE
    params:
        tasks=lambda wildcards: config["report"]["tables"][wildcards.table]["tasks"],
        networks=lambda wildcards: table_networks(wildcards.table),
        contrasts=lambda wildcards: config["report"]["tables"][wildcards.table].get(
            "contrasts", []
        ),
    script:
        "../scripts/table.py"


rule depth_figure:
    """Test error against the depth of the transformer."""
    input:
        metrics=lambda wildcards: table_metrics(wildcards.table),
        code=[*REPORT_LIBRARY, PAPER_RESULTS],
    output:
        report(
            "results/figures/{table}.png",
            caption="../report/depth.rst",
            category="Figures",
            labels={"figure": "{table} by depth"},
        ),
        "results/figures/{table}.pdf",
    log:
        "logs/report/{table}_depth.log",
    conda:
        SOFTWARE
    params:
        tasks=lambda wildcards: config["report"]["tables"][wildcards.table]["tasks"],
        networks=lambda wildcards: table_networks(wildcards.table),
    script:
        "../scripts/depth_figure.py"


rule rotation_report:
    """The rotation analysis of a table's networks: predicted against applied angle, and the
    residual pose's spread by depth (a figure), and the spreads over seeds (a table)."""
    input:
        analyses=lambda wildcards: rotation_analyses(wildcards.table),
        code=REPORT_LIBRARY,
    output:
        figure=report(
            "results/figures/{table}_rotation.png",
            caption="../report/rotation.rst",
            category="Figures",
            labels={"figure": "{table} rotation analysis"},
        ),
        figure_pdf="results/figures/{table}_rotation.pdf",
        table=report(
            "results/tables/{table}_rotation.html",
            caption="../report/rotation_table.rst",
            category="Tables",
            labels={"table": "{table} rotation analysis"},
        ),
        table_files=multiext("results/tables/{table}_rotation", ".csv", ".md", ".tex"),
    log:
        "logs/report/{table}_rotation.log",
    conda:
        SOFTWARE
    params:
        networks=lambda wildcards: table_networks(wildcards.table),
    script:
        "../scripts/rotation_report.py"


ALIGNMENT = config["report"]["alignment"]
PROOF = config["report"]["proof"]


rule alignment_figure:
    """Test digits under several rotations and scales, and what each network's transformer makes of them."""
    input:
        rotation=model_paths(
            ALIGNMENT["rotation_task"], ALIGNMENT["networks"], ALIGNMENT["seed"]
        ),
        scale=model_paths(
            ALIGNMENT["scale_task"], ALIGNMENT["networks"], ALIGNMENT["seed"]
        ),
        code=REPORT_LIBRARY,
    output:
        report(
            "results/figures/mnist_alignment.png",
            caption="../report/alignment.rst",
            category="Figures",
            labels={"figure": "alignment"},
        ),
        "results/figures/mnist_alignment.pdf",
    log:
        "logs/report/mnist_alignment.log",
    conda:
        SOFTWARE
    params:
        alignment=ALIGNMENT,
    script:
        "../scripts/alignment_figure.py"


rule angle_figure:
    """Applied against predicted rotation on the rotated test set, per network."""
    input:
        models=model_paths(
            ALIGNMENT["rotation_task"], ALIGNMENT["networks"], ALIGNMENT["seed"]
        ),
        test_set=f"resources/test_sets/{ALIGNMENT['rotation_task']}.pt",
        code=REPORT_LIBRARY,
    output:
        report(
            "results/figures/mnist_angles.png",
            caption="../report/angles.rst",
            category="Figures",
            labels={"figure": "angles"},
        ),
        "results/figures/mnist_angles.pdf",
    log:
        "logs/report/mnist_angles.log",
    conda:
        SOFTWARE
    params:
        networks=ALIGNMENT["networks"],
    script:
        "../scripts/angle_figure.py"


rule proof_figure:
    """Depth-1 feature maps of rotated digits aligned back by the exact inverse rotation."""
    input:
        models=model_paths(PROOF["task"], PROOF["networks"], PROOF["seed"]),
        code=REPORT_LIBRARY,
    output:
        report(
            "results/figures/proof.png",
            caption="../report/proof.rst",
            category="Figures",
            labels={"figure": "proof"},
        ),
        "results/figures/proof.pdf",
    log:
        "logs/report/proof.log",
    conda:
        SOFTWARE
    params:
        proof=PROOF,
    script:
        "../scripts/proof_figure.py"


rule training_figure:
    """How a table's runs trained: loss and the transformer's displacement against steps."""
    input:
        metrics=lambda wildcards: table_metrics(wildcards.table),
        logs=lambda wildcards: table_logs(wildcards.table),
        code=REPORT_LIBRARY,
    output:
        report(
            "results/figures/{table}_training.png",
            caption="../report/training.rst",
            category="Training",
            labels={"figure": "{table} training curves"},
        ),
        "results/figures/{table}_training.pdf",
    log:
        "logs/report/{table}_training.log",
    conda:
        SOFTWARE
    params:
        tasks=lambda wildcards: config["report"]["tables"][wildcards.table]["tasks"],
        networks=lambda wildcards: table_networks(wildcards.table),
    script:
        "../scripts/training_figure.py"


rule stability:
    """Whether the learned transformers of a table trained stably: diverged, stuck at the
    identity or collapsed to one warp, per network and task (a table and a figure)."""
    input:
        metrics=lambda wildcards: table_metrics(wildcards.table),
        logs=lambda wildcards: table_logs(wildcards.table),
        code=REPORT_LIBRARY,
    output:
        table=report(
            "results/tables/{table}_stability.html",
            caption="../report/stability.rst",
            category="Training",
            labels={"table": "{table} stability"},
        ),
        table_files=multiext("results/tables/{table}_stability", ".csv", ".md", ".tex"),
        figure=report(
            "results/figures/{table}_stability.png",
            caption="../report/stability.rst",
            category="Training",
            labels={"figure": "{table} stability"},
        ),
        figure_pdf="results/figures/{table}_stability.pdf",
    log:
        "logs/report/{table}_stability.log",
    conda:
        SOFTWARE
    params:
        tasks=lambda wildcards: config["report"]["tables"][wildcards.table]["tasks"],
        networks=lambda wildcards: table_networks(wildcards.table),
    script:
        "../scripts/stability.py"
