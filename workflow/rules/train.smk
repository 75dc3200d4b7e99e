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

    rule train:
        input:
            dataset=rules.synthesize.output.dataset,
            stamp=stamp("train"),
        output:
            ckpt=directory(TRAINED["ckpt"]),
            log=directory(TRAINED["log"]),
            provenance=TRAINED["provenance"],
        log:
            f"logs/{STUDY.name}/train/{{run}}/seed{{seed}}.log",
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
