"""The proof, measured: depth-1 feature maps of rotated digits aligned back by the exact inverse."""

from pathlib import Path

import torch

from stn.config import load_splits
from stn.invariance import realign_feature_maps, transformation
from stn.job import job
from stn.report.views import proof_figure
from stn.training import load_checkpoint

with job(snakemake.log[0]):
    proof = snakemake.params.proof
    realignments = {}
    for network, path in zip(proof["networks"], snakemake.input.models, strict=True):
        model, content = load_checkpoint(path)
        digits = load_splits(content["config"])
        images = digits.test_images[: proof["digits"], None].float() / 255.0
        realignments[network] = {
            angle: realign_feature_maps(
                model, images, transformation("rotation", angle, len(images)), proof["depth"]
            )
            for angle in proof["angles"]
        }
        for angle, result in realignments[network].items():
            features, inputs = torch.nanmean(result.features_error), torch.nanmean(result.input_error)
            print(
                f"{network} {angle:g}°: mean relative error: maps aligned {features:.3f}, input {inputs:.2e}"
            )
    proof_figure(realignments, proof["channels"], Path(snakemake.output[0]).with_suffix(""))
