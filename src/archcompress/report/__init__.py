"""Reports from stored results: measured figures, plots and one self-contained HTML page; never trains."""

from archcompress.report.html import write_report
from archcompress.report.measure import enrich_report, layer_rows, measure_model
from archcompress.report.plots import pareto_plot, search_curve_plot

__all__ = ["enrich_report", "layer_rows", "measure_model", "pareto_plot", "search_curve_plot", "write_report"]
