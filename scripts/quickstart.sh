#!/usr/bin/env bash
# From a fresh clone to a trained, evaluated scene: set up, generate a synthetic EPIC-Diff scene,
# train divff on it (CPU), evaluate it. Re-running reuses the venv and the scene.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
bash scripts/setup.sh
source .venv/bin/activate

scene=${SCENE:-data/EPIC-Diff/SYN_00}
iterations=${ITERATIONS:-3000}
if [ ! -f "$scene/meta.json" ]; then
  python scripts/make_scene.py "$scene" --seed 0 --frames 120
fi
ns-train divff --data "$scene" --machine.device-type cpu --max-num-iterations "$iterations" \
  --vis tensorboard --output-dir outputs --timestamp quickstart
config="outputs/$(basename "$scene")/divff/quickstart/config.yml"
python scripts/evaluate.py --load-config "$config"
echo "Look at: outputs/$(basename "$scene")/divff/quickstart/evaluation/ (frames/*.png, summary.mp4)"
echo "Live viewer: ns-viewer --load-config $config --viewer.websocket-host 127.0.0.1"
