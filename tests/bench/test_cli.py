"""The command line ``python -m stn bench``: its checks before measuring and its JSON report."""

from __future__ import annotations

import json

import pytest
import yaml

from stn.bench.cli import main
from tests.bench.conftest import tiny_experiment


def test_command_line_writes_the_json_report(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_experiment()))
    out = tmp_path / "bench.json"
    argv = ["--config", str(config), "--device", "cpu", "--levers", "fp32", "--seconds", "0.1"]
    assert main([*argv, "--networks", "CNN", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [e["network"] for e in report["runs"]] == ["CNN"] and report["config"] == str(config)
    assert "written: " + str(out) in capsys.readouterr().out


def test_command_line_rejects_a_bad_config_before_measuring(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({**tiny_experiment(), "networks": ["STN-Q9"]}))
    with pytest.raises(SystemExit):
        main(["--config", str(config), "--device", "cpu"])


def test_mps_needs_several_runs():
    with pytest.raises(SystemExit):
        main(["--config", "config/paper.yaml", "--device", "cpu", "--mps"])
