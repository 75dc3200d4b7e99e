"""The pipeline stages: thin command-line wrappers, one per Snakemake rule and DVC stage.

Every stage starts here, before torch or numpy is imported: the numeric libraries are pinned
to one code path (docs/method.md §11)."""

from conceptspace import numerics

numerics.pin()
