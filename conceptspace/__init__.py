"""conceptspace: learning dynamics of diffusion models in concept space (docs/method.md).

The library has no command lines; the stages in ``stages/`` are its thin callers. Subpackages
follow the pipeline: :mod:`.data` -> :mod:`.model` -> :mod:`.measure` -> :mod:`.analysis` ->
:mod:`.figures`; each states in its docstring what it may import. :mod:`.params` (the typed
params.yaml, the one source of settings) and :mod:`.io` (atomic artifact files) serve all.
"""
