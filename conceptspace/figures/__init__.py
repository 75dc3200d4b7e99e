"""Figures: drawing only, tables in, PNG/PDF/GIF files out.

``style`` (colours, markers, axes helpers, saving), one module per figure family:
``trajectories``, ``learning_times``, ``capability``, ``diagnostics`` (samples, embeddings,
training curves), ``extensions`` (3-D trajectories, distance vs learning time, guidance, ODE
fits, underspecification); ``drawing.draw_study`` draws every figure a study calls for.
docs/method.md §9.

May import: :mod:`conceptspace.analysis` (to read table layouts, never to compute results),
:mod:`conceptspace.data.concepts` (value names), :mod:`conceptspace.io`; nothing of model or
measure.
"""
