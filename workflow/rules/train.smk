rule train:
    input:
        dataset=rules.synthesize.output.dataset,
        stamp=stamp("train"),
    output:
        ckpt=directory(f"{S}/train/{{run}}/seed{{seed}}/ckpt"),
        log=directory(f"{S}/train/{{run}}/seed{{seed}}/log"),
        provenance=provenance("train"),
    log:
        f"logs/{STUDY.name}/train/{{run}}/seed{{seed}}.log",
    threads: DOC["train"]["threads"]
    priority: 10  # the critical path: start every training job before evaluations
    resources:
        gpu=1,  # a scheduling counter: the default profile caps it to 0 (CPU)
        mem_mb=8000,
        runtime=240,
    shell:
        cmd("train") + " > {log} 2>&1"
