rule table:
    """Test error per network and task over seeds, beside the paper's, and the stated orderings."""
    input:
        metrics=lambda wildcards: table_metrics(wildcards.table),
        code=REPORT_LIBRARY,
    output:
        table=report(
            multiext("results/tables/{table}", ".csv", ".md", ".tex"),
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
        contrasts=report(
            multiext("results/tables/{table}_contrasts", ".csv", ".md", ".tex"),
            caption="../report/contrasts.rst",
            category="Tables",
            labels={"table": "{table} orderings"},
        ),
        figure=report(
            multiext("results/figures/{table}_errors", ".png", ".pdf"),
            caption="../report/errors.rst",
            category="Figures",
            labels={"figure": "{table} errors"},
        ),
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
        code=REPORT_LIBRARY,
    output:
        report(
            multiext("results/figures/{table}", ".png", ".pdf"),
            caption="../report/depth.rst",
            category="Figures",
            labels={"figure": "{table} by depth"},
        ),
    log:
        "logs/report/{table}_depth.log",
    conda:
        SOFTWARE
    params:
        tasks=lambda wildcards: config["report"]["tables"][wildcards.table]["tasks"],
        networks=lambda wildcards: table_networks(wildcards.table),
    script:
        "../scripts/depth_figure.py"


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
            multiext("results/figures/mnist_alignment", ".png", ".pdf"),
            caption="../report/alignment.rst",
            category="Figures",
            labels={"figure": "alignment"},
        ),
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
            multiext("results/figures/mnist_angles", ".png", ".pdf"),
            caption="../report/angles.rst",
            category="Figures",
            labels={"figure": "angles"},
        ),
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
            multiext("results/figures/proof", ".png", ".pdf"),
            caption="../report/proof.rst",
            category="Figures",
            labels={"figure": "proof"},
        ),
    log:
        "logs/report/proof.log",
    conda:
        SOFTWARE
    params:
        proof=PROOF,
    script:
        "../scripts/proof_figure.py"
