"""The Snakemake HTML report of a tiny run: built, self-contained, and rendered by headless Chromium.

The report (``snakemake --report``) is one HTML page whose content React draws from JSON embedded
in it (``var results = {...}``, ``var categories = {...}``). Its landing view shows only the menu
(Workflow, Statistics, About, and one entry per result category) beside the rule graph; file names
appear once a category is opened, captions once a file's info button is clicked. So the page is
rendered twice: as it opens, and as a copy with a probe script appended that clicks through every
category and every file as a reader would and records the text each view shows. The landing view
also holds the front page (``workflow/report/workflow.rst``): what produced the results.
"""

from __future__ import annotations

import datetime
import html
import json
import platform
import re
import shutil
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

from stn.io import sha256sum
from stn.provenance import TRAIN_STATS_KEY
from tests.workflow import warm_snakemake
from tests.workflow.test_workflow import TINY, snakemake_command

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CATEGORIES = {"tables": "Tables", "figures": "Figures"}  # results/<folder> -> report category
TRAINING = ("_training", "_stability")  # ... except how the runs trained: the category Training
REPORTED = {".html", ".png"}  # the formats the report shows in the page
RECORDS = {"results/provenance.json": "Provenance"}  # report items outside results/<folder>

# Appended to a copy of the report: clicks through the menu (home, a category, a subcategory where
# there are several, a row's info button), records the text of each view and the file a row opens,
# and ends on the view of a PNG figure for the screenshot. It goes home between views as a reader
# must: a file list is built when first drawn, so switching categories in place shows the old one.
PROBE = """
<script>
(async function () {
  const probe = { categories: {}, rows: [], errors: [] };
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const root = () => document.getElementById("app");
  const text = () => root().innerText;
  const link = (label) => [...root().querySelectorAll("a")].find((a) => a.textContent.trim() === label);
  const rows = () => [...root().querySelectorAll("nav tbody tr")];
  async function click(element, what) {
    if (!element) throw new Error("nothing to click: " + what);
    element.click();
    await sleep(100);  // React renders asynchronously
  }
  async function open(category, subcategory) {
    await click(root().querySelector("nav ol a"), "home breadcrumb");
    await click(link(category), category);
    if (Object.keys(categories[category]).length > 1) await click(link(subcategory), subcategory);
  }
  try {
    for (let i = 0; i < 100 && !link("Workflow"); i++) await sleep(100);
    probe.landing = text();
    for (const category of Object.keys(categories)) {
      for (const subcategory of Object.keys(categories[category])) {
        await open(category, subcategory);
        probe.categories[category + "/" + subcategory] = text();
        const count = rows().length;
        for (let index = 0; index < count; index++) {
          await open(category, subcategory);
          const row = rows()[index];
          const cells = [...row.querySelectorAll("td")].map((td) => td.textContent.trim());
          const buttons = row.querySelectorAll("a");  // view (or download), info
          await click(buttons[buttons.length - 1], "info button of " + cells.join(" "));
          probe.rows.push({ category, subcategory, index, cells, path: app.state.resultPath, text: text() });
        }
      }
    }
    // the screenshot shows a training figure where there is one, else the first figure
    const figures = probe.rows.filter((row) => results[row.path].mime_type === "image/png");
    const figure = figures.find((row) => row.path.endsWith("_training.png")) || figures[0];
    if (figure) {
      await open(figure.category, figure.subcategory);
      await click(rows()[figure.index].querySelector("a"), "view button of " + figure.path);
      probe.figure = app.state.resultPath;
      await sleep(500);
    }
  } catch (error) {
    probe.errors.push(String(error));
  }
  const out = document.createElement("pre");
  out.id = "stn-probe";
  out.style.display = "none";
  out.textContent = JSON.stringify(probe);
  document.body.appendChild(out);
})();
</script>
"""


def embedded_json(page: str, name: str) -> dict:
    """The JSON the report embeds as ``var <name> = {...};`` in a <script> element of that id."""
    match = re.search(rf"<script id=\"{name}\">\s*var {name} = (.*?);\s*</script>", page, re.DOTALL)
    assert match, f"the report lacks its embedded `{name}` data"
    return json.loads(match[1])


def plain(text: str) -> str:
    """HTML (or rendered text) as words separated by single spaces."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def shown_as(path: str, result: dict) -> set[str]:
    """What the report's file list shows for a result: its label values, or else its path."""
    return {str(value) for value in result["labels"].values()} if result["labels"] else {path}


def render(page: Path, screenshot: Path) -> str:
    """The DOM of ``page`` after its scripts ran, and a screenshot of it, from headless Chromium."""
    command = [
        CHROMIUM,
        "--headless",  # no display needed
        "--no-sandbox",  # Chromium refuses to start as root (CI containers) with its sandbox
        "--disable-gpu",  # no GPU process: software rendering only
        "--disable-dev-shm-usage",  # containers often have a 64 MB /dev/shm; the page is megabytes
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={screenshot.parent / 'chromium-profile'}",  # not ~/.config/chromium
        "--window-size=1400,1000",
        # run scripts and timers (React, Vega, the probe) on a virtual clock that fast-forwards
        # while the page is idle; when it is used up, dump the DOM and take the screenshot
        "--virtual-time-budget=30000",
        f"--screenshot={screenshot}",
        "--dump-dom",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert screenshot.stat().st_size > 0, result.stderr[-3000:]
    return result.stdout


def front_page_lines(run: Path) -> list[str]:
    """What the front page must show for a workflow run, as plain text: each config file with its
    SHA-256; every run's code version and environment, from its metrics (which must record them);
    each raw data file with its SHA-256, or the data set's name where its data came with a
    package; and per task the runs and their summed training time."""
    config = run / "config.yaml"
    lines = [f"{config.relative_to(run)} {sha256sum(config)}"]  # as the workflow names it: relative
    training = defaultdict(lambda: [0, 0.0])
    for path in sorted(run.glob("results/runs/*/*/*/metrics.json")):
        metrics = json.loads(path.read_text())
        assert TRAIN_STATS_KEY in metrics, f"{path}: no code version or environment recorded"
        code, environment = metrics[TRAIN_STATS_KEY]["code"], metrics[TRAIN_STATS_KEY]["environment"]
        assert re.fullmatch(r"[0-9a-f]{40}", code["commit"]), f"{path}: {code}"
        assert isinstance(code["modified"], bool), f"{path}: {code}"
        assert (environment["python"], environment["torch"]) == (platform.python_version(), torch.__version__)
        lines += [code["commit"], environment["processor"], environment["host"]]
        training[metrics["task"]][0] += 1
        training[metrics["task"]][1] += metrics["train_seconds"]
    for manifest in sorted(run.glob("resources/prepared/*.json")):
        raw_files = json.loads(manifest.read_text())["raw_files"]
        packaged = [f"shipped with a Python package): {manifest.stem}"]
        lines += [f"{file} {sha256}" for file, sha256 in raw_files.items()] or packaged
    for task, (runs, seconds) in training.items():
        lines.append(f"{task} {runs} {datetime.timedelta(seconds=round(seconds))}")
    return lines


def assert_not_blank(png: Path) -> None:
    pixels = matplotlib.image.imread(png)[..., :3]
    colours = np.unique((pixels * 255).round().astype(np.uint8).reshape(-1, 3), axis=0)
    assert pixels.std() > 0.05, f"{png.name}: nearly uniform (std {pixels.std():.3f})"
    assert len(colours) >= 16, f"{png.name}: only {len(colours)} distinct colours"


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (.ci/install-chromium.sh)")
def test_report_renders_every_table_and_figure(tiny_run, tmp_path):
    times = {}
    start = time.perf_counter()
    command = snakemake_command(tiny_run, TINY, "--report", str(tmp_path / "report.html"))
    result = warm_snakemake.run(command, tiny_run)
    times["report"] = time.perf_counter() - start
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = tmp_path / "report.html"
    assert report.stat().st_size > 100_000  # the page embeds its scripts and every result

    # Every table (as an HTML page) and figure (as a PNG; the .csv, .md, .tex and .pdf beside
    # them are for other uses) the run wrote is a report item of its category, with a caption,
    # embedded as a data URI.
    expected = {
        path.relative_to(tiny_run).as_posix(): "Training"
        if path.stem.endswith(TRAINING)
        else CATEGORIES[folder]
        for folder in CATEGORIES
        for path in sorted((tiny_run / "results" / folder).rglob("*"))
        if path.suffix in REPORTED
    } | RECORDS
    assert {"Tables", "Figures", "Training"} <= set(expected.values()), expected
    # the training figures (results/figures/<table>_training.png) are among them
    training_figures = [path for path in expected if path.endswith("_training.png")]
    assert training_figures, f"no training figure among the run's outputs: {sorted(expected)}"
    page = report.read_text()
    results, categories = embedded_json(page, "results"), embedded_json(page, "categories")
    listed = {path: name for name, subs in categories.items() for paths in subs.values() for path in paths}
    for path, category in expected.items():
        assert listed.get(path) == category, f"{path}: in category {listed.get(path)!r}, not {category!r}"
        assert plain(results[path]["caption"]), f"{path}: no caption"
        assert results[path]["data_uri"].startswith("data:"), f"{path}: not embedded"

    # As it opens: the scripts ran and the menu lists the result categories.
    start = time.perf_counter()
    landing = render(report, tmp_path / "landing.png")
    app = landing[landing.index('<div id="app">') :]
    menu = plain(re.sub(r"<(script|svg)\b.*?</\1>", " ", app, flags=re.DOTALL))
    for item in ("Workflow", "Statistics", "About", "Results", "Figures", "Tables", "Training", "Provenance"):
        assert item in menu, f"{item!r} not on the landing view: {menu[:500]}"
    # beside the menu, the front page: what the pipeline reproduces, and what produced the results
    assert "Spatial transformer networks and invariance: a reproduction" in menu
    assert "How to read this report" in menu and "System Message" not in menu
    for line in front_page_lines(tiny_run):
        assert line in menu, f"{line!r} not on the front page: {menu[:3000]}"
    assert re.search(r'id="loading-screen"[^>]*display: none', landing), "the report is still loading"
    assert_not_blank(tmp_path / "landing.png")

    # Clicked through: every category lists its files, every row's info shows its file's caption.
    head, body_end, tail = page.rpartition("</body>")
    probed = tmp_path / "report-probe.html"
    probed.write_text(head + PROBE + body_end + tail)
    dom = render(probed, tmp_path / "figure.png")
    times["chromium"] = time.perf_counter() - start
    match = re.search(r'<pre id="stn-probe"[^>]*>(.*?)</pre>', dom, re.DOTALL)
    assert match, "the probe did not finish within Chromium's virtual time budget"
    probe = json.loads(html.unescape(match[1]))
    assert not probe["errors"], probe["errors"]
    # A row shows a file's path, or its labels where the workflow gives labels.
    for row in probe["rows"]:
        path = row["path"]
        assert expected.get(path) == row["category"], f"row {row['cells']} opens {path!r}"
        assert shown_as(path, results[path]) <= set(row["cells"]), f"row {row['cells']} opens {path}"
        caption = plain(results[path]["caption"])
        assert caption[:80] in plain(row["text"]), f"{path}: caption {caption[:80]!r} not shown"
    hidden = []
    for path, category in expected.items():
        rows = [row for row in probe["rows"] if row["category"] == category]
        assert any(shown_as(path, results[path]) <= set(row["cells"]) for row in rows), (
            f"{path} ({shown_as(path, results[path])}) not listed under {category}"
        )
        hidden += [] if any(row["path"] == path for row in rows) else [path]
    # the report keys its rows by labels: files sharing labels would share a row that opens one
    assert not hidden, f"in the report but no row opens them: {', '.join(hidden)}"
    assert results[probe["figure"]]["mime_type"] == "image/png"
    assert probe["figure"] in training_figures  # viewed, and screenshotted just below
    assert_not_blank(tmp_path / "figure.png")

    print("seconds: " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in times.items()))
