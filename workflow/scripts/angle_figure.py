"""The authors' angle histogram: applied against predicted rotation, per network."""

from pathlib import Path

from stn.evaluation import diverged, load_test_set
from stn.invariance import predicted_angles
from stn.job import job
from stn.report.views import angle_figure
from stn.training import load_checkpoint

with job(snakemake.log[0]):
    angles = {}
    for network, path in zip(snakemake.params.networks, snakemake.input.models, strict=True):
        model, content = load_checkpoint(path)
        if diverged(content):
            print(f"{network}: left out, its training diverged")
            continue
        test = load_test_set(snakemake.input.test_set, content["config"])
        poses = test["poses"] if model.needs_pose else None
        predicted = predicted_angles(model, test["images"], poses).numpy()
        angles[network] = (test["params"]["angle"].numpy(), predicted)
    angle_figure(angles, Path(snakemake.output[0]).with_suffix(""))
