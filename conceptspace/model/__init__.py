"""Model: the conditional U-Net, the learned log-SNR schedule, the VDM loss and sampler, and
training with exact resume and checkpoints. docs/method.md §3.

May import: :mod:`conceptspace.io` and :mod:`conceptspace.sections` (the params sections, which
state the settings of its configs and their checks once); nothing of data (it sees arrays),
measure, analysis or figures. The sampler and the loss take the network as an argument.
"""
