"""Synthetic first-person kitchen scenes in the EPIC-Diff format, with ground truth."""

from divff_nerfstudio.synthetic.epic_writer import SceneConfig, write_scene

__all__ = ["SceneConfig", "write_scene"]
