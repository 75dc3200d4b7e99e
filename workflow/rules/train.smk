rule train:
    input:
        dataset=rules.synthesize.output.dataset,
    output:
        ckpt=directory("results/train/{run}/seed{seed}/ckpt"),
        log=directory("results/train/{run}/seed{seed}/log"),
    log:
        "logs/train/{run}/seed{seed}.log",
    params:
        run=run_params,
        grid=config["grid"],
        section=config["train"],
    threads: config["train"]["threads"]
    priority: 10  # the critical path: start every training job before evaluations
    resources:
        gpu=1,  # a scheduling counter: the default profile caps it to 0 (CPU)
        mem_mb=8000,
        runtime=240,
    shell:
        "python -m stages.train --run {wildcards.run} --seed {wildcards.seed} --dataset {input.dataset} --ckpt-dir {output.ckpt} --log-dir {output.log} > {log} 2>&1"
