rule analyze:
    input:
        synthesize=per_run(rules.synthesize.output),
        train=per_run(list(TRAINED.values())),
        probe=per_run(rules.probe.output),
        intervene=per_run(rules.intervene.output),
        stamp=stamp("analyze"),
    output:
        metrics=report(
            f"{S}/analyze/metrics.json",
            caption="../report/metrics.rst",
            category="Study",
            labels={"file": "metrics.json"},
        ),
        summary=report(
            f"{S}/analyze/summary.md",
            caption="../report/summary.rst",
            category="Study",
            labels={"file": "summary.md"},
        ),
        headline=f"{S}/analyze/headline.json",
        details=f"{S}/analyze/details.json",
        trajectories=f"{S}/analyze/trajectories.csv",
        learning_times=f"{S}/analyze/learning_times.csv",
        capability=f"{S}/analyze/capability.csv",
        dose_response=f"{S}/analyze/dose_response.csv",
        losses=f"{S}/analyze/losses.csv",
        concept_distance=f"{S}/analyze/concept_distance.csv",
        dynamics_fit=f"{S}/analyze/dynamics_fit.csv",
        guidance_learning_times=f"{S}/analyze/guidance_learning_times.csv",
        underspecification=f"{S}/analyze/underspecification.csv",
        figures=report(
            directory(f"{S}/analyze/figures"),
            patterns=["{name}.png", "{name}.gif"],
            caption="../report/figures.rst",
            category="Study",
        ),
        provenance=provenance("analyze"),
    log:
        f"logs/{STUDY.name}/analyze.log",
    conda:
        "../envs/conceptspace.yaml"
    shell:
        cmd("analyze") + " > {log} 2>&1"
