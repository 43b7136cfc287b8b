"""Verify and prepare a data set once; write its manifest (sizes, raw files' SHA-256)."""

from pathlib import Path

from stn.data import get_dataset
from stn.io import save_json, sha256sum
from stn.job import job

with job(snakemake.log[0]):
    data = snakemake.params.data
    splits = get_dataset(data["dataset"]).load(data)
    manifest = {
        "data": data,
        "train_images": len(splits.train_images),
        "test_images": len(splits.test_images),
        "raw_files": {str(path): sha256sum(path) for path in map(Path, snakemake.input.raw)},
    }
    save_json(manifest, snakemake.output[0])
    print(manifest)
