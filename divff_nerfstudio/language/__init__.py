"""Language targets: the encoders (CLIP, video, DINO), the per-frame target grids and their cache."""
