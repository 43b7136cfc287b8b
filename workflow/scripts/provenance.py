"""What produced the results: the record (JSON) and the report's front page sections (rst)."""

from stn.front_page import front_page_rst, summarise
from stn.io import atomic_write, save_json
from stn.job import job

with job(snakemake.log[0]):
    summary = summarise(snakemake.input.configs, snakemake.input.metrics, snakemake.input.manifests)
    save_json(summary, snakemake.output.summary)
    atomic_write(snakemake.output.front_page, lambda tmp: tmp.write_text(front_page_rst(summary)))
