"""Workflow glue: per-stage entry points called by the Snakemake scripts and the CLI."""
