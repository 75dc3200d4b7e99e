rule intervene:
    input:
        ckpt=rules.train.output.ckpt,
        probe=rules.fit_probe.output.probe,
    output:
        table="results/intervene/{run}/seed{seed}/intervene.csv",
        embeddings="results/intervene/{run}/seed{seed}/embeddings.csv",
    log:
        "logs/intervene/{run}/seed{seed}.log",
    params:
        run=run_params,
        grid=config["grid"],
        section=config["intervene"],
    threads: config["intervene"]["threads"]
    shell:
        "python -m stages.intervene --run {wildcards.run} --seed {wildcards.seed} --ckpt-dir {input.ckpt} --probe {input.probe} --table {output.table} --embeddings {output.embeddings} > {log} 2>&1"
