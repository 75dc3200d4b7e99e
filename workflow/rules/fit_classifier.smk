rule fit_classifier:
    input:
        FOLDER_TABLE,
        stamp=stamp("fit_classifier"),
    output:
        classifier=f"{S}/fit_classifier/classifier.pt",
        metrics=f"{S}/fit_classifier/metrics.json",
        provenance=provenance("fit_classifier"),
    log:
        f"logs/{STUDY.name}/fit_classifier.log",
    threads: DOC["fit_classifier"]["threads"]
    # every probe and intervention waits for the classifier: fit it beside the first training
    # rather than after the last, when the other core would idle until it is done
    priority: 15
    conda:
        "../envs/conceptspace.yaml"
    shell:
        cmd("fit_classifier") + " > {log} 2>&1"
