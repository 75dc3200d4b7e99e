"""Analysis: pure functions from the probe and intervene tables to tables and metrics.

``curves`` (smoothing, sustained crossings, learning times), ``trajectories`` (concept-space
trajectories, saturation, turns, memorization), ``capability`` (best-dose capability curves
with their binomial intervals, the dose-response, emergence and leads read with the intervals),
``fits`` (the one least-squares line and the one signal-order rule), ``dynamics_model``
(the phenomenological ODE), the extensions ``concept_distance``, ``guidance``,
``underspecification``; ``tables`` (every table of a study: the entry point) and ``verdicts``
(tables -> metrics and the three phenomena); ``across_seeds`` (the verdicts pooled over seeds,
with their uncertainty) on ``censored`` (medians and the rank correlation of learning times
some of which are censored, with its permutation test); ``headline`` (the few numbers of
``metrics.json``); ``jsonready`` (the one JSON cleaner).
docs/method.md §5-§8.

May import: numpy, pandas, scipy, and its own modules; nothing of data, model, measure,
figures or io. No file I/O, no plotting.
"""
