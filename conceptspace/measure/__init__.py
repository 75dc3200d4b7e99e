"""Measurement: the concept classifier that places images in concept space (``classifier``),
generating and classifying samples at a checkpoint (``probing``) and the elicitation methods
(``interventions``: overprompting, linear latent interventions). docs/method.md §4, §6.

May import: :mod:`conceptspace.data`, :mod:`conceptspace.model`, :mod:`conceptspace.io`;
nothing of analysis or figures.
"""
