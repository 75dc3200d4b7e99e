# Ids, paths and helpers shared by the rules. Stages read params.yaml themselves, so the
# Snakefile refuses --config/--configfile overrides that would never reach them, and checks
# params.yaml with the same loader (schema + typed model) that every stage uses.
import sys

import yaml

from conceptspace.params import ParamsError, load_params, read_yaml

try:
    PARAMS = load_params("params.yaml")
    if config != read_yaml("params.yaml"):
        raise ParamsError(
            "params.yaml: --config/--configfile overrides do not reach the stages; "
            "edit params.yaml (or use `dvc exp run -S key=value`) instead"
        )
except ParamsError as e:
    sys.exit(f"error: {e}")

RUNS = PARAMS.run_ids
SEEDS = PARAMS.seeds
RUN = "{run}/seed{seed}"


wildcard_constraints:
    run="|".join(RUNS),
    seed=r"\d+",


def per_run(pattern):
    """Expand a pattern with {run} and {seed} over the whole sweep."""
    return expand(pattern, run=RUNS, seed=SEEDS)


def final_outputs():
    return ["results/analyze/metrics.json"]


def run_params(wildcards):
    """The sweep point's own entry of `runs`, so editing one run re-runs only its jobs."""
    return config["runs"][wildcards.run]
