"""Result tables (Markdown + JSON) like the paper's Tables 4 and 7."""

from nasspeech.reporting.tables import (
    comparison_table,
    format_mean_std,
    format_value,
    results_table,
    summarise,
)

__all__ = ["comparison_table", "format_mean_std", "format_value", "results_table", "summarise"]
