"""The report's tables and figures, from the metrics, logs and networks of many runs.

- :mod:`stn.report.tables`: the statistics tables and their human-readable cells;
- :mod:`stn.report.writers`: a table as CSV, Markdown, HTML and LaTeX;
- :mod:`stn.report.figures`: figures from the metrics tables, and saving a figure;
- :mod:`stn.report.views`: figures of what networks do (alignment, angles, the proof);
- :mod:`stn.report.rotation`: the rotation analysis, drawn and tabulated;
- :mod:`stn.report.training`: training curves and the stability of learned transformers.
"""
