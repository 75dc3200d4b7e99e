import os

# Folder data (synthesize.source: folder): the folder's attribute table, outside the project,
# so that editing it re-runs synthesize and fit_classifier; nothing for shapes. A list rather
# than an input function, which would mix rules and functions in this file.
FOLDER_TABLE = (
    [
        os.path.join(
            DOC["synthesize"]["folder"]["root"],
            DOC["synthesize"]["folder"].get("attributes", "list_attr_celeba.txt"),
        )
    ]
    if DOC["synthesize"].get("source", "shapes") == "folder"
    else []
)


rule synthesize:
    input:
        FOLDER_TABLE,
        stamp=stamp("synthesize"),
    output:
        dataset=f"{S}/synthesize/{{run}}/seed{{seed}}/dataset.npz",
        card=f"{S}/synthesize/{{run}}/seed{{seed}}/card.json",
        samples=f"{S}/synthesize/{{run}}/seed{{seed}}/samples.png",
        provenance=provenance("synthesize"),
    log:
        f"logs/{STUDY.name}/synthesize/{{run}}/seed{{seed}}.log",
    priority: 20  # cheap, and it unblocks training
    conda:
        "../envs/conceptspace.yaml"
    shell:
        cmd("synthesize") + " > {log} 2>&1"
