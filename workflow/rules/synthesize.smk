import os


def folder_inputs(wildcards=None):
    """Folder data (synthesize.source: folder): the folder's attribute table, outside the
    project, so that editing it re-runs synthesize and fit_probe; nothing for shapes."""
    syn = config["synthesize"]
    if syn.get("source", "shapes") != "folder":
        return []
    folder = syn["folder"]
    return [os.path.join(folder["root"], folder.get("attributes", "list_attr_celeba.txt"))]


rule synthesize:
    input:
        folder_inputs,
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
