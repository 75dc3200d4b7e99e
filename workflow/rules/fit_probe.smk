rule fit_probe:
    input:
        folder_inputs,
        stamp=stamp("fit_probe"),
    output:
        probe=f"{S}/fit_probe/probe.pt",
        metrics=f"{S}/fit_probe/metrics.json",
        provenance=provenance("fit_probe"),
    log:
        f"logs/{STUDY.name}/fit_probe.log",
    threads: DOC["fit_probe"]["threads"]
    shell:
        cmd("fit_probe") + " > {log} 2>&1"
