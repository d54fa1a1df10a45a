"""Training: nerfstudio's trainer made safe to interrupt, its checkpoints and random states."""
