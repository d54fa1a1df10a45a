#!/usr/bin/env python
"""NeuralDiff's summary videos of a trained divff run: per frame GT | composite | static | objects |
actor (summary.mp4), and the scene from one fixed viewpoint as time runs (fixed_viewpoint.mp4).

Example: python scripts/summary_video.py --load-config outputs/SYN/divff/<run>/config.yml
Writes the videos and one image per frame to --output-dir (default: <run>/summary).
"""

import tyro

from divff_nerfstudio.summary_video import SummaryVideo

if __name__ == "__main__":
    tyro.cli(SummaryVideo).main()
