"""The qualitative figure: what each network's transformer makes of rotated and scaled digits."""

from pathlib import Path

import torch

from stn.config import load_splits
from stn.evaluation import diverged
from stn.job import job
from stn.report.views import alignment_figure
from stn.training import load_checkpoint

with job(snakemake.log[0]):
    settings = snakemake.params.alignment
    networks = settings["networks"]
    rotation, scale_models, contents = {}, {}, []
    for network, rotated, scaled in zip(
        networks, snakemake.input.rotation, snakemake.input.scale, strict=True
    ):
        (rotation_model, rotation_run), (scale_model, scale_run) = (
            load_checkpoint(rotated),
            load_checkpoint(scaled),
        )
        if diverged(rotation_run) or diverged(scale_run):
            print(f"{network}: left out, its training diverged")
            continue
        rotation[network], scale_models[network] = rotation_model, scale_model
        contents.append(scale_run)
    digits = load_splits(contents[0]["config"])
    chosen = torch.stack(
        [digits.test_images[digits.test_labels == label][0] for label in (2, 4, 7)][: settings["digits"]]
    )
    alignment_figure(
        rotation,
        scale_models,
        chosen,
        settings["angles"],
        settings["scales"],
        contents[0]["config"]["task"]["canvas"],
        Path(snakemake.output[0]).with_suffix(""),
    )
