rule synthesize:
    output:
        dataset="results/synthesize/{run}/seed{seed}/dataset.npz",
        card="results/synthesize/{run}/seed{seed}/card.json",
        samples="results/synthesize/{run}/seed{seed}/samples.png",
    log:
        "logs/synthesize/{run}/seed{seed}.log",
    params:
        run=run_params,
        grid=config["grid"],
        section=config["synthesize"],
    priority: 20  # cheap, and it unblocks training
    shell:
        "python -m stages.synthesize --run {wildcards.run} --seed {wildcards.seed} --dataset {output.dataset} --card {output.card} --samples {output.samples} > {log} 2>&1"
