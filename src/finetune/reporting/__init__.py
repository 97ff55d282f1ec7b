"""Reporting shared by the stages: figures (matplotlib), Markdown tables and the HTML helpers."""
