#!/usr/bin/env python
"""Convert a COLMAP model (images/ + sparse/0) into an EPIC-Diff scene (meta.json + frames/).

Example: python scripts/colmap_to_epic_diff.py --images clip/images --model clip/sparse/0 --out data/EPIC-Diff/MY_CLIP
"""

import tyro

from dataparsers.colmap_to_epic_diff import ColmapConversion, convert

if __name__ == "__main__":
    convert(tyro.cli(ColmapConversion))
