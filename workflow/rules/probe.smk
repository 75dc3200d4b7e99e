rule probe:
    input:
        ckpt=TRAINED["ckpt"],
        log=TRAINED["log"],  # read by nothing here; DVC lists all of train's cached outputs
        classifier=rules.fit_classifier.output.classifier,
        stamp=stamp("probe"),
    output:
        table=f"{S}/probe/{{run}}/seed{{seed}}/probe.csv",
        samples=f"{S}/probe/{{run}}/seed{{seed}}/samples.npz",
        grid=f"{S}/probe/{{run}}/seed{{seed}}/samples.png",
        provenance=provenance("probe"),
    log:
        f"logs/{STUDY.name}/probe/{{run}}/seed{{seed}}.log",
    threads: DOC["probe"]["threads"]
    conda:
        "../envs/conceptspace.yaml"
    shell:
        cmd("probe") + " > {log} 2>&1"
