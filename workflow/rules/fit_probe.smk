rule fit_probe:
    input:
        folder_inputs,
    output:
        probe="results/fit_probe/probe.pt",
        metrics="results/fit_probe/metrics.json",
    log:
        "logs/fit_probe.log",
    params:
        runs=config["runs"],
        grid=config["grid"],
        synthesize=config["synthesize"],
        section=config["fit_probe"],
    threads: config["fit_probe"]["threads"]
    shell:
        "python -m stages.fit_probe --probe {output.probe} --metrics {output.metrics} > {log} 2>&1"
