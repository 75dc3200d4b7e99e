rule probe:
    input:
        ckpt=rules.train.output.ckpt,
        probe=rules.fit_probe.output.probe,
    output:
        table="results/probe/{run}/seed{seed}/probe.csv",
        samples="results/probe/{run}/seed{seed}/samples.npz",
        grid="results/probe/{run}/seed{seed}/samples.png",
    log:
        "logs/probe/{run}/seed{seed}.log",
    params:
        run=run_params,
        grid=config["grid"],
        section=config["probe"],
    threads: config["probe"]["threads"]
    shell:
        "python -m stages.probe --run {wildcards.run} --seed {wildcards.seed} --ckpt-dir {input.ckpt} --probe {input.probe} --table {output.table} --samples {output.samples} --grid {output.grid} > {log} 2>&1"
