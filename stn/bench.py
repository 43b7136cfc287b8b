"""Throughput benchmark: our batched augmentation against a per-sample PIL/DataLoader pipeline.

For each MNIST task it times (1) :func:`stn.data.augment.augment` on batches indexed from
digits already on the device, (2) the authors' style of pipeline, one PIL digit at a time
through torchvision transforms in DataLoader workers, and (3) whole training steps of the
table-1 networks fed by our path. Every measurement runs for a time budget, not a fixed
number of batches. Run ``python -m stn.bench --help``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from stn.data.augment import PAPER_TASKS, TaskSpec, augment
from stn.data.mnist import load_digits
from stn.networks import build_network
from stn.variants import InvalidNetworkName, parse_network_name

TABLE1_NETWORKS = ("CNN", "STN-C0", "STN-C1", "STN-DL1", "STN-SL1")


class PerSampleDataset(Dataset):
    """The authors' kind of pipeline: each item is one digit transformed as a PIL image.

    The digit is padded to the task's canvas and shifted (``RandomAffine`` translate,
    whole pixels), clutter patches of random other digits are pasted with numpy (max),
    then ``RandomRotation`` and ``RandomAffine`` scale (bilinear) transform the canvas,
    so clutter is scaled with the digit, and ``ToTensor`` gives (1, canvas, canvas) in [0, 1].
    Random draws use torch's and numpy's global generators, seeded per DataLoader worker.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, task: TaskSpec) -> None:
        self.images, self.labels, self.task = images, labels, task
        size, canvas = images.shape[-1], task.canvas
        place: list[Callable] = [transforms.Pad((canvas - size) // 2)] if canvas > size else []
        if task.translation:
            shift = task.translation / canvas
            place.append(transforms.RandomAffine(0, translate=(shift, shift)))
        finish: list[Callable] = []
        if task.rotation:
            finish.append(transforms.RandomRotation(task.rotation, interpolation=InterpolationMode.BILINEAR))
        lo, hi = task.log2_scale
        if (lo, hi) != (0.0, 0.0):
            finish.append(
                transforms.RandomAffine(0, scale=(2.0**lo, 2.0**hi), interpolation=InterpolationMode.BILINEAR)
            )
        self.place = transforms.Compose(place)
        self.finish = transforms.Compose([*finish, transforms.ToTensor()])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = self.place(Image.fromarray(self.images[index]))
        if self.task.clutter:
            image = Image.fromarray(self._clutter(np.array(image), index))
        return self.finish(image), int(self.labels[index])

    def _clutter(self, canvas: np.ndarray, index: int) -> np.ndarray:
        """Max-paste ``clutter`` random crops of other digits at random places on ``canvas``."""
        k, n = self.task.clutter_size, len(self.images)
        for _ in range(self.task.clutter):
            other = self.images[(index + 1 + np.random.randint(n - 1)) % n]
            y, x = np.random.randint(0, other.shape[-1] - k + 1, 2)
            top, left = np.random.randint(0, canvas.shape[-1] - k + 1, 2)
            window = canvas[top : top + k, left : left + k]
            np.maximum(window, other[y : y + k, x : x + k], out=window)
        return canvas


def _rate(step: Callable[[], int], seconds: float, warmup: int, sync: Callable[[], None]) -> float:
    """Items per second of ``step`` (returns items done) over at least ``seconds``, after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    sync()
    done, start = 0, time.perf_counter()
    while True:
        done += step()
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def _batches(
    digits: Tensor, labels: Tensor, task: TaskSpec, batch_size: int, seed: int
) -> Callable[[], tuple[Tensor, Tensor]]:
    """A function drawing a random batch of digits on their device and augmenting it with ``augment``."""
    generator = torch.Generator(digits.device).manual_seed(seed)

    def draw() -> tuple[Tensor, Tensor]:
        index = torch.randint(len(digits), (batch_size,), device=digits.device, generator=generator)
        return augment(digits[index], task, generator)[0], labels[index]

    return draw


def per_sample_rate(
    images: np.ndarray,
    labels: np.ndarray,
    task: TaskSpec,
    batch_size: int,
    workers: int,
    seconds: float,
) -> float:
    """Images/s of :class:`PerSampleDataset` through a shuffling DataLoader, after one batch per worker."""
    loader = DataLoader(
        PerSampleDataset(images, labels, task),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    stream: Iterator = itertools.chain.from_iterable(itertools.repeat(loader))
    return _rate(lambda: len(next(stream)[1]), seconds, max(1, workers), lambda: None)


def _step_rate(
    network: str,
    task: TaskSpec,
    draw: Callable[[], tuple[Tensor, Tensor]],
    device: torch.device,
    seconds: float,
    sync: Callable[[], None],
) -> float:
    """Training steps/s (augment, forward, cross-entropy, backward, SGD step) after 2 warm-up steps."""
    model = build_network(network, "mnist", input_size=task.canvas).to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)

    def step() -> int:
        images, targets = draw()
        loss = F.cross_entropy(model(images), targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return 1

    return _rate(step, seconds, 2, sync)


def run_benchmark(
    tasks: Sequence[str] = ("R", "S", "T"),
    batch_size: int = 256,
    seconds: float = 3.0,
    workers: int | None = None,
    networks: Sequence[str] = TABLE1_NETWORKS,
    device: str = "auto",
    steps: bool = True,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """Measure every task's augmentation throughput and (if ``steps``) training steps.

    Returns ``{"device", "batch_size", "workers", "augmentation": {task: {"ours",
    "per_sample", "ratio"}}, "steps": {task: {network: {"steps_per_s", "images_per_s"}}}}``
    with rates in images/s (``ratio`` = ours / per_sample) and steps/s.
    """
    workers = (os.cpu_count() or 1) if workers is None else workers
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    data = load_digits("embedded")
    digits, labels = data.train_images.to(dev), data.train_labels.to(dev)
    results: dict = {"device": str(dev), "batch_size": batch_size, "workers": workers}
    results["augmentation"], results["steps"] = {}, {}
    for name in tasks:
        task = PAPER_TASKS[name]
        log(f"task {name}: augmentation")
        draw = _batches(digits, labels, task, batch_size, seed=0)
        ours = _rate(lambda draw=draw: len(draw()[1]), seconds, 1, sync)
        theirs = per_sample_rate(
            data.train_images.numpy(), data.train_labels.numpy(), task, batch_size, workers, seconds
        )
        results["augmentation"][name] = {"ours": ours, "per_sample": theirs, "ratio": ours / theirs}
        if not steps:
            continue
        results["steps"][name] = {}
        for network in networks:
            log(f"task {name}: training steps of {network}")
            rate = _step_rate(network, task, draw, dev, seconds, sync)
            results["steps"][name][network] = {
                "steps_per_s": rate,
                "images_per_s": rate * batch_size,
            }
    return results


def format_report(results: dict) -> str:
    """The results as two plain-text tables."""
    lines = [
        f"device {results['device']}, batch size {results['batch_size']}, "
        f"per-sample DataLoader workers {results['workers']}",
        "",
        f"{'task':<6}{'ours img/s':>14}{'per-sample img/s':>20}{'ratio':>10}",
    ]
    for task, r in results["augmentation"].items():
        lines.append(f"{task:<6}{r['ours']:>14,.0f}{r['per_sample']:>20,.0f}{r['ratio']:>9.1f}x")
    if results["steps"]:
        lines += ["", f"{'task':<6}{'network':<10}{'steps/s':>10}{'img/s':>12}"]
        for task, by_network in results["steps"].items():
            for network, r in by_network.items():
                lines.append(f"{task:<6}{network:<10}{r['steps_per_s']:>10.2f}{r['images_per_s']:>12,.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(
        prog="python -m stn.bench",
        description="Throughput of our batched augmentation vs a per-sample PIL/DataLoader "
        "pipeline, and training steps/s of the table-1 networks, per MNIST task.",
        epilog="On a CPU, training steps on S (112x112 inputs) take seconds each and dominate "
        "the run; use --skip-steps, --tasks or a smaller --batch-size for a quick look. When "
        "other processes share the cores, --threads 1 avoids OpenMP oversubscription, which can "
        "slow torch's CPU kernels many times over.",
    )
    parser.add_argument("--tasks", nargs="+", choices=sorted(PAPER_TASKS), default=["R", "S", "T"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0, help="time budget per measurement")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="per-sample DataLoader workers"
    )
    parser.add_argument("--networks", nargs="+", default=list(TABLE1_NETWORKS))
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--skip-steps", action="store_true", help="skip the training-step timings")
    args = parser.parse_args(argv)
    threads_ok = args.threads is None or args.threads >= 1
    if args.batch_size < 1 or args.seconds <= 0 or args.workers < 0 or not threads_ok:
        parser.error("--batch-size and --threads must be >= 1, --seconds > 0 and --workers >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    for network in args.networks:
        try:
            parse_network_name(network)
        except InvalidNetworkName as error:
            parser.error(str(error))
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run_benchmark(
        args.tasks,
        args.batch_size,
        args.seconds,
        args.workers,
        args.networks,
        args.device,
        steps=not args.skip_steps,
        log=lambda message: print(message, file=sys.stderr, flush=True),
    )
    print(format_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
