"""The training job's evaluation of its run, taken by the evaluation job only under the same key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stn.evaluation import evaluate, evaluate_for_memo, prepare_test_set
from stn.evaluation_memo import memo_key, memo_path, remembered
from stn.training import train
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]
CODE = [str(ROOT / "stn" / "evaluation.py"), str(ROOT / "stn" / "networks.py")]
TIMING = ("eval_seconds",)


def same_result(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    """A trained tiny run's checkpoint and its task's test set."""
    directory = tmp_path_factory.mktemp("memo")
    config = tiny_config()
    checkpoint, test_set = directory / "model.pt", directory / "test.pt"
    train(config, checkpoint)
    prepare_test_set(config, test_set)
    return checkpoint, test_set


def test_the_memo_holds_what_the_evaluation_job_would_compute(run):
    checkpoint, test_set = run
    said = evaluate_for_memo(checkpoint, test_set, CODE, "cpu")
    assert said.startswith("evaluated for the evaluation job"), said
    taken = remembered(checkpoint, memo_key(checkpoint, test_set, CODE, "cpu"))
    assert taken is not None and same_result(taken, evaluate(checkpoint, test_set, None, "cpu"))


def test_a_changed_input_or_device_finds_no_memo(run, tmp_path):
    checkpoint, test_set = run
    evaluate_for_memo(checkpoint, test_set, CODE, "cpu")
    edited = tmp_path / "evaluation.py"
    edited.write_text(Path(CODE[0]).read_text() + "\n# edited\n")
    other_test_set = tmp_path / "other.pt"
    prepare_test_set(tiny_config(task={"name": "R", "canvas": 28, "rotation": 45}), other_test_set)
    for key in (
        memo_key(checkpoint, test_set, [str(edited), CODE[1]], "cpu"),  # the evaluation's code
        memo_key(checkpoint, test_set, CODE[:1], "cpu"),  # one code input fewer
        memo_key(checkpoint, other_test_set, CODE, "cpu"),  # another test set
        memo_key(checkpoint, test_set, CODE, "cuda"),  # another device
        memo_key(test_set, test_set, CODE, "cpu"),  # other checkpoint content
    ):
        assert remembered(checkpoint, key) is None


def test_a_damaged_memo_is_ignored_and_a_missing_test_set_makes_none(run, tmp_path):
    checkpoint, test_set = run
    key = memo_key(checkpoint, test_set, CODE, "cpu")
    evaluate_for_memo(checkpoint, test_set, CODE, "cpu")
    memo_path(checkpoint).write_text('{"key": ')  # cut short
    assert remembered(checkpoint, key) is None
    said = evaluate_for_memo(checkpoint, tmp_path / "absent.pt", CODE, "cpu")
    assert "does not exist yet" in said and not memo_path(checkpoint).exists()  # nor the damaged one


def test_a_damaged_test_set_makes_no_memo_and_names_the_file(run, tmp_path):
    checkpoint, test_set = run
    damaged = tmp_path / "test.pt"
    damaged.write_bytes(test_set.read_bytes()[:1000])
    damaged.with_name("test.pt.sha256").write_text(Path(f"{test_set}.sha256").read_text())
    said = evaluate_for_memo(checkpoint, damaged, CODE, "cpu")
    assert said.startswith("not evaluated here") and str(damaged) in said
    assert not memo_path(checkpoint).exists()


def test_taking_the_memo_imports_no_torch(run):
    checkpoint, test_set = run
    evaluate_for_memo(checkpoint, test_set, CODE, "cpu")
    probe = (
        "import sys; from stn.evaluation_memo import memo_key, remembered; "
        f"metrics = remembered({str(checkpoint)!r}, memo_key({str(checkpoint)!r}, {str(test_set)!r}, "
        f"{CODE!r}, 'cpu')); print(metrics is not None, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["True", "False"]
