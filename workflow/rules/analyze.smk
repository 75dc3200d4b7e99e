rule analyze:
    input:
        synthesize=per_run(rules.synthesize.output),
        train=per_run(list(TRAINED.values())),
        probe=per_run(rules.probe.output),
        intervene=per_run(rules.intervene.output),
        stamp=stamp("analyze"),
    output:
        metrics=f"{S}/analyze/metrics.json",
        summary=f"{S}/analyze/summary.md",
        details=f"{S}/analyze/details.json",
        trajectories=f"{S}/analyze/trajectories.csv",
        learning_times=f"{S}/analyze/learning_times.csv",
        capability=f"{S}/analyze/capability.csv",
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
    shell:
        cmd("analyze") + " > {log} 2>&1"
