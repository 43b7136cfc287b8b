"""The training step: host-free batches, the graph-capturable update, and the levers
(channels_last and polyphase blocks on any device, deterministic on the CPU; bf16 and CUDA
graphs: checked on a GPU, no-ops on the CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from stn.config import resolve_run_config, task_spec
from stn.data.mnist.task import PAPER_TASKS, augment, draw_augmentation, render_augmentation
from stn.geometry import identity
from stn.io import load_torch
from stn.monitor import TrainingMonitor
from stn.training import (
    GpuOutOfMemory,
    TrainingStep,
    batch_indices,
    capture_cuda_graph,
    load_checkpoint,
    make_optimizer,
    network_from_config,
    sgd_update,
    state_path,
    train,
)
from tests.conftest import tiny_config
from tests.test_faults import Interrupted, interrupt_at

CUDA_SWITCHES = {
    "precision": "bf16",
    "channels_last": True,
    "cudnn_benchmark": True,
    "cuda_graph": True,
    "polyphase": True,
}
CPU_SWITCHES = {"channels_last": True, "polyphase": True}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_epoch_order_on_the_device_gives_the_batches_of_batch_indices(digits):
    config = resolve_run_config(tiny_config(train={"batch_size": 48, "iterations": 300}))
    model = network_from_config(config)
    images, labels = digits.train_images, digits.train_labels
    step = TrainingStep(
        model,
        make_optimizer(model, config["train"]),
        images,
        labels,
        task_spec(config),
        config["train"],
        3,
        300,
    )
    per_epoch = -(-len(images) // 48)
    for number in [0, 1, per_epoch - 1, per_epoch, 2 * per_epoch + 5]:
        assert torch.equal(step.indices(number), batch_indices(number, len(images), 48, 3))


@pytest.mark.parametrize("task", sorted(PAPER_TASKS))
def test_rendering_the_draws_is_augment(task, digits):
    spec = PAPER_TASKS[task]
    expected = augment(digits.train_images[:20], spec, torch.Generator().manual_seed(5))
    draws = draw_augmentation(20, spec, torch.Generator().manual_seed(5))
    images, params = render_augmentation(digits.train_images[:20], draws, spec)
    assert torch.equal(images, expected[0])
    assert all(torch.equal(params[key], expected[1][key]) for key in params)


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 1e-3)])
def test_sgd_update_with_tensor_rates_matches_torch_sgd(momentum, weight_decay):
    def make():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 3))
        groups = [
            {"params": model[0].parameters(), "lr": 0.1},
            {"params": model[1].parameters(), "lr": 0.03},
        ]
        return model, torch.optim.SGD(groups, lr=0.1, momentum=momentum, weight_decay=weight_decay)

    reference, reference_opt = make()
    ours, ours_opt = make()
    inputs = torch.randn(4, 8, 5)
    for number, x in enumerate(inputs):
        for model, optimizer in [(reference, reference_opt), (ours, ours_opt)]:
            optimizer.zero_grad()
            model(x).square().sum().backward()
        reference_opt.step()
        if number == 0:  # the first step creates the momentum buffers, as in training
            ours_opt.step()
        else:
            sgd_update(ours_opt, [torch.tensor(g["lr"]) for g in ours_opt.param_groups])
    for mine, theirs in zip(ours.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7)


def switched_config(switches: dict) -> dict:
    return tiny_config(train={**tiny_config()["train"], **switches})


def same_weights(first, second) -> bool:
    ours, theirs = load_torch(first)["model"], load_torch(second)["model"]
    return all(torch.equal(ours[key], theirs[key]) for key in ours)


def test_cuda_only_switches_change_nothing_on_the_cpu(tmp_path):
    cuda_only = {key: value for key, value in CUDA_SWITCHES.items() if key not in CPU_SWITCHES}
    train(tiny_config(), tmp_path / "plain.pt", progress=False)
    train(switched_config(cuda_only), tmp_path / "switched.pt", progress=False)
    assert same_weights(tmp_path / "plain.pt", tmp_path / "switched.pt")


def test_cpu_levers_apply_and_train_bit_identically_run_to_run_and_across_resume(tmp_path, monkeypatch):
    config = resolve_run_config(switched_config(CPU_SWITCHES))  # 12 steps, state saved every 4
    model = network_from_config(config)
    images = torch.rand(64, 1, 28, 28)
    optimizer = make_optimizer(model, config["train"])
    labels = torch.zeros(64, dtype=torch.long)
    step = TrainingStep(model, optimizer, images, labels, task_spec(config), config["train"], 0, 12)
    assert step.channels_last and model.blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert model.blocks[0].fuses(list(model.blocks[0]), model.blocks[0].polyphase)

    train(config, tmp_path / "a.pt", progress=False)
    train(config, tmp_path / "b.pt", progress=False)
    assert same_weights(tmp_path / "a.pt", tmp_path / "b.pt")
    with monkeypatch.context() as patch:
        interrupt_at(patch, 10)
        with pytest.raises(Interrupted):
            train(config, tmp_path / "resumed.pt", progress=False)
    assert load_torch(state_path(tmp_path / "resumed.pt"))["step"] == 8
    train(config, tmp_path / "resumed.pt", progress=False)
    assert same_weights(tmp_path / "a.pt", tmp_path / "resumed.pt")


def gpu_config(network: str, task: str, **train_switches) -> dict:
    spec = PAPER_TASKS[task]
    return tiny_config(
        device="cuda",
        task={
            "name": task,
            "canvas": spec.canvas,
            "rotation": spec.rotation,
            "log2_scale": list(spec.log2_scale),
            "translation": spec.translation,
            "clutter": spec.clutter,
        },
        model={"network": network, "backbone_args": {"channels": [16, 16]}},
        train={"batch_size": 64, "epochs": None, "iterations": 40, "checkpoint_every": 100, **train_switches},
    )


@cuda
@pytest.mark.parametrize(
    "network, task", [("STN-C1", "R"), ("STN-SL1", "T"), ("STN-C1-oracle", "S"), ("STN-DL1", "R")]
)
def test_cuda_graph_and_bf16_train_like_the_eager_fp32_step(tmp_path, network, task):
    losses = {}
    for name, switches in {
        "eager": {},
        "graph": {"cuda_graph": True},
        "polyphase+graph": {"polyphase": True, "cuda_graph": True},
        "polyphase_all+graph": {"polyphase": "all", "cuda_graph": True},
        "bf16+graph": CUDA_SWITCHES,
    }.items():
        stats = train(gpu_config(network, task, **switches), tmp_path / f"{name}.pt", progress=False)
        model, content = load_checkpoint(tmp_path / f"{name}.pt", "cpu")  # loads on the CPU
        assert next(model.parameters()).device.type == "cpu"
        assert all(torch.isfinite(v).all() for v in content["model"].values())
        losses[name] = stats["final_loss"]
    # the same batches and draws: fp32 graph and eager agree to rounding, bf16 to its precision
    assert losses["graph"] == pytest.approx(losses["eager"], rel=1e-2, abs=1e-3)
    assert losses["polyphase+graph"] == pytest.approx(losses["eager"], rel=1e-2, abs=1e-3)
    assert losses["polyphase_all+graph"] == pytest.approx(losses["eager"], rel=1e-2, abs=1e-3)
    assert losses["bf16+graph"] == pytest.approx(losses["eager"], rel=0.15, abs=0.05)


@cuda
def test_a_nan_inside_a_captured_cuda_graph_is_caught_as_an_eager_one_is():
    device = torch.device("cuda")
    model = network_from_config(resolve_run_config(tiny_config())).to(device)
    monitor = TrainingMonitor(model, device)
    loss, theta = torch.ones((), device=device), identity(4, device)
    logits, labels = torch.zeros(4, 10, device=device), torch.zeros(4, dtype=torch.long, device=device)

    def observe() -> None:
        monitor.observe(loss, logits, labels, {"SL1": theta})

    observe()  # step 0, eager: creates the sums the graph adds to
    graph, _ = capture_cuda_graph(observe, device)  # its warm-up observes step 1
    for value in (2.0, 3.0, float("nan"), 4.0):  # steps 2-5, replayed
        loss.fill_(value)
        graph.replay()
    divergence = monitor.nonfinite()
    assert divergence is not None and divergence.step == 4 and divergence.last_finite_loss == 3.0
    row, again = monitor.read(6, 0.1, {"classifier": 0.1}, 1.0)
    assert again == divergence and math.isnan(row["loss"])


@cuda
def test_a_run_that_does_not_fit_its_gpu_says_which_what_and_the_fix(tmp_path):
    free, _ = torch.cuda.mem_get_info()
    ballast = torch.empty(int(free * 0.98), dtype=torch.uint8, device="cuda")  # leave almost nothing
    try:
        with pytest.raises(GpuOutOfMemory) as error:
            train(gpu_config("STN-C1", "R"), tmp_path / "model.pt", progress=False, runs_per_gpu=4)
    finally:
        del ballast
        torch.cuda.empty_cache()
    message = str(error.value)
    for part in ("STN-C1 on R seed 0", "batch_size 64", "runs_per_gpu 4", "GiB", "resources.runs_per_gpu"):
        assert part in message
    assert not (tmp_path / "model.pt").exists()
