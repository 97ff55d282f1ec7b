"""Error analysis: the error_analysis stage and each analysis it reports."""
