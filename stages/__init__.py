"""The pipeline stages: thin command-line wrappers, one per Snakemake rule and DVC stage."""
