rule intervene:
    input:
        ckpt=TRAINED["ckpt"],
        log=TRAINED["log"],  # read by nothing here; DVC lists all of train's cached outputs
        classifier=rules.fit_classifier.output.classifier,
        stamp=stamp("intervene"),
    output:
        table=f"{S}/intervene/{{run}}/seed{{seed}}/intervene.csv",
        embeddings=f"{S}/intervene/{{run}}/seed{{seed}}/embeddings.csv",
        provenance=provenance("intervene"),
    log:
        f"logs/{STUDY.name}/intervene/{{run}}/seed{{seed}}.log",
    threads: DOC["intervene"]["threads"]
    conda:
        "../envs/conceptspace.yaml"
    shell:
        cmd("intervene") + " > {log} 2>&1"
