import os


def folder_inputs(wildcards=None):
    """Folder data (synthesize.source: folder): the folder's attribute table, outside the
    project, so that editing it re-runs synthesize and fit_classifier; nothing for shapes."""
    syn = DOC["synthesize"]
    if syn.get("source", "shapes") != "folder":
        return []
    folder = syn["folder"]
    return [os.path.join(folder["root"], folder.get("attributes", "list_attr_celeba.txt"))]


rule synthesize:
    input:
        folder_inputs,
        stamp=stamp("synthesize"),
    output:
        dataset=f"{S}/synthesize/{{run}}/seed{{seed}}/dataset.npz",
        card=f"{S}/synthesize/{{run}}/seed{{seed}}/card.json",
        samples=f"{S}/synthesize/{{run}}/seed{{seed}}/samples.png",
        provenance=provenance("synthesize"),
    log:
        f"logs/{STUDY.name}/synthesize/{{run}}/seed{{seed}}.log",
    priority: 20  # cheap, and it unblocks training
    shell:
        cmd("synthesize") + " > {log} 2>&1"
