# Training: one job per (run, seed), the rule `train`; with train.ensemble: K > 1, one job per
# group of up to K runs trained as one batched model (conceptspace/pipeline.py, "Training
# groups"): the rules train_g0, train_g1, ..., each writing every member's per-run outputs.
# Downstream rules read the per-run paths of TRAINED, whichever rule makes them.
TRAINED = {
    "ckpt": f"{S}/train/{{run}}/seed{{seed}}/ckpt",
    "log": f"{S}/train/{{run}}/seed{{seed}}/log",
    "provenance": provenance("train"),
}
TRAIN_RESOURCES = {
    "gpu": 1,  # a scheduling counter: the default profile caps it to 0 (CPU)
    "mem_mb": 8000,
    "runtime": 240,
}


if not pipeline.grouped(DOC):

    # The rule `train` names its wildcards train_run and train_seed (rules/common.smk:
    # WILDCARD_NAMES), not run and seed. `snakemake --dag` writes the values of a job's
    # wildcards on its box (the Snakemake tutorial, "Basics: An example workflow", step 4), but
    # Snakemake leaves out each name and value that an upstream job already has: under
    # synthesize's names, the train boxes and the probe and intervene boxes below them would
    # all read just their rule's name. Paths, commands and provenance are the same strings.
    rule train:
        input:
            dataset=in_own_wildcards("train", rules.synthesize.output.dataset),
            stamp=stamp("train"),
        output:
            ckpt=directory(in_own_wildcards("train", TRAINED["ckpt"])),
            log=directory(in_own_wildcards("train", TRAINED["log"])),
            provenance=in_own_wildcards("train", TRAINED["provenance"]),
        log:
            in_own_wildcards("train", f"logs/{STUDY.name}/train/{{run}}/seed{{seed}}.log"),
        threads: DOC["train"]["threads"]
        priority: 10  # the critical path: start every training job before evaluations
        resources:
            **TRAIN_RESOURCES,
        conda:
            "../envs/conceptspace.yaml"
        shell:
            cmd("train") + " > {log} 2>&1"

else:
    for group in pipeline.train_groups(DOC):

        rule:
            name:
                group.name
            input:
                dataset=members(rules.synthesize.output.dataset, group),
                stamp=group_stamp(group),
            output:
                ckpt=[directory(p) for p in members(TRAINED["ckpt"], group)],
                log=[directory(p) for p in members(TRAINED["log"], group)],
                provenance=members(TRAINED["provenance"], group),
            log:
                f"logs/{STUDY.name}/train/{group.id}.log",
            params:
                # bound now: a shell directive's expression is evaluated when the job runs,
                # by which time the loop variable names the last group
                command=pipeline.train_command(S, PARAMS_FILE, group.members),
            threads: DOC["train"]["threads"]
            priority: 10
            resources:
                **train_resources(TRAIN_RESOURCES),
            conda:
                "../envs/conceptspace.yaml"
            shell:
                "{params.command} > {log} 2>&1"
