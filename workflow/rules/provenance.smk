FRONT_PAGE_LIBRARY = [os.path.relpath(REPO / "stn" / "front_page.py")]


rule provenance:
    """What produced the results, for the report's front page (workflow/report/workflow.rst):
    the config files, the runs' code versions and environments, the raw data's SHA-256 and the
    training time per task."""
    input:
        # relative: a run moved with its config keeps its front page
        configs=[os.path.relpath(path) for path in workflow.configfiles],
        metrics=all_metrics(),
        manifests=all_manifests(),
        code=FRONT_PAGE_LIBRARY,
    output:
        summary=report(
            "results/provenance.json",
            caption="../report/provenance.rst",
            category="Provenance",
        ),
        front_page="results/front_page.rst",
    log:
        "logs/report/provenance.log",
    conda:
        SOFTWARE
    script:
        "../scripts/provenance.py"
