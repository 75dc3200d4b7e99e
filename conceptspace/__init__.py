"""Learning dynamics of diffusion models in concept space (Park et al., NeurIPS 2024)."""
