"""The qualitative figure: what each network's transformer makes of rotated and scaled digits."""

from pathlib import Path

import torch

from stn.config import load_splits
from stn.io import output_to
from stn.report import alignment_figure
from stn.training import load_checkpoint

with output_to(snakemake.log[0]):
    settings = snakemake.params.alignment
    networks = settings["networks"]
    rotation = {n: load_checkpoint(p)[0] for n, p in zip(networks, snakemake.input.rotation, strict=True)}
    scale_models, contents = {}, []
    for network, path in zip(networks, snakemake.input.scale, strict=True):
        scale_models[network], content = load_checkpoint(path)
        contents.append(content)
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
