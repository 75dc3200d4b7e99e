"""Data: the concept grid, the renderer, real-image folders and the training sets.

``concepts`` (the grid of classes, their conditioning vectors and names), ``render`` (images of
circles from concept values, the measured concept signal), ``folder`` (CelebA-style folders),
``dataset`` (a run's training and held-out sets, its card). docs/method.md §1-§2.

May import: :mod:`conceptspace.io` and :mod:`conceptspace.params` (the typed sections it takes);
nothing of model, measure, analysis or figures.
"""
