#!/usr/bin/env bash
# From a fresh clone to a trained, evaluated, queryable scene: set up, generate a synthetic EPIC-Diff
# scene, train the test CLIP (its object labels held out), train divff on it (CPU), evaluate it
# (mAP, PSNR, object and affordance segmentation by text), render NeuralDiff's summary videos and a
# text query. Re-running reuses the venv,
# the scene, the test CLIP and the feature cache.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
bash scripts/setup.sh
source .venv/bin/activate

scene=${SCENE:-data/EPIC-Diff/SYN_00}
iterations=${ITERATIONS:-3000}
query=${QUERY:-hand}
clip=outputs/test_clip/divff_tiny_clip.pt
if [ ! -f "$scene/meta.json" ]; then
  divff-make-scene "$scene" clean --seed 0 --frames 120
fi
if [ ! -f "$clip" ]; then
  divff-train-test-clip --out "$clip" --hold-out-from "$scene"
fi
ns-train divff --data "$scene" --machine.device-type cpu --max-num-iterations "$iterations" \
  --pipeline.datamanager.language.clip.model-name DivffTiny-CLIP \
  --pipeline.datamanager.language.clip.pretrained "$clip" \
  --vis tensorboard --output-dir outputs --timestamp quickstart
run="outputs/$(basename "$scene")/divff/quickstart"
divff-evaluate --load-config "$run/config.yml"
divff-summary --load-config "$run/config.yml" --split test
divff-render dataset --load-config "$run/config.yml" --split test --query "$query" \
  --rendered-output-names rgb relevancy relevancy_objects relevancy_actor --output-path "$run/query_$query"
echo "Look at: $run/evaluation/ (frames/*.png, language/*.png, affordances/*.png, summary.mp4), $run/summary/ (streams per test frame, fixed-viewpoint video) and $run/query_$query/"
echo "Live viewer (type a query in the 'Text query' folder): ns-viewer --load-config $run/config.yml --viewer.websocket-host 127.0.0.1"
