"""A table written as CSV (its numbers), Markdown, an HTML page and LaTeX (its cells)."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from stn.io import atomic_write

HTML_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; white-space: nowrap; }}
th {{ background: #f3f3f3; }}
</style></head>
<body><p>{caption}</p>
{table}
</body></html>
"""


def _latex_text(text: str) -> str:
    return text.replace("%", r"\%").replace("±", r"$\pm$").replace("−", "--").replace("°", r"$^\circ$")


def write_table(
    table: pd.DataFrame,
    cells: Callable[[bool], pd.DataFrame],
    stem: Path | str,
    caption: str,
) -> None:
    """Write ``stem``.csv (the numbers of ``table``), .md, .html (a page for the report) and
    .tex (booktabs) of the human-readable ``cells(latex)``."""
    stem = Path(stem)
    atomic_write(stem.with_suffix(".csv"), lambda tmp: table.to_csv(tmp, float_format="%.4f"))
    markdown = cells(False).to_markdown(disable_numparse=True)
    atomic_write(stem.with_suffix(".md"), lambda tmp: tmp.write_text(f"{caption}\n\n{markdown}\n"))
    page = HTML_PAGE.format(
        title=html.escape(stem.name), caption=html.escape(caption), table=cells(False).to_html()
    )
    atomic_write(stem.with_suffix(".html"), lambda tmp: tmp.write_text(page))
    latex = cells(True)
    columns = "l" + "r" * len(latex.columns)
    header = " & ".join(
        [latex.index.name or "", *(_latex_text(c).replace("diff", r"$\Delta$") for c in latex.columns)]
    )
    body = "\n".join(
        " & ".join([_latex_text(name), *row]) + r" \\"
        for name, row in zip(latex.index, latex.values.tolist(), strict=True)
    )
    tex = "\n".join(
        [
            r"\begin{table}[t]",
            r"\centering",
            f"\\caption{{{_latex_text(caption)}}}",
            f"\\begin{{tabular}}{{{columns}}}",
            r"\toprule",
            header + r" \\",
            r"\midrule",
            body,
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
            "",
        ]
    )
    atomic_write(stem.with_suffix(".tex"), lambda tmp: tmp.write_text(tex))
