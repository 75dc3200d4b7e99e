rule analyze:
    input:
        synthesize=per_run(rules.synthesize.output),
        train=per_run(rules.train.output),
        probe=per_run(rules.probe.output),
        intervene=per_run(rules.intervene.output),
    output:
        metrics="results/analyze/metrics.json",
        summary="results/analyze/summary.md",
        trajectories="results/analyze/trajectories.csv",
        learning_times="results/analyze/learning_times.csv",
        capability="results/analyze/capability.csv",
        losses="results/analyze/losses.csv",
        concept_distance="results/analyze/concept_distance.csv",
        dynamics_fit="results/analyze/dynamics_fit.csv",
        guidance_learning_times="results/analyze/guidance_learning_times.csv",
        underspecification="results/analyze/underspecification.csv",
        figures=report(
            directory("results/analyze/figures"),
            patterns=["{name}.png", "{name}.gif"],
            caption="../report/figures.rst",
            category="Study",
        ),
    log:
        "logs/analyze.log",
    params:
        runs=config["runs"],
        seeds=config["seeds"],
        section=config["analyze"],
    shell:
        "python -m stages.analyze --synthesize results/synthesize --train results/train --probe results/probe --intervene results/intervene --out results/analyze > {log} 2>&1"
