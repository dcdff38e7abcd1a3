#!/usr/bin/env bash
# README's first command: set everything up, then run gridwatch on the sample media with the
# real model and print what it detected. Outputs land in target/demo/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
GRIDWATCH_PROFILE=release "$root/scripts/setup.sh"
. "$root/scripts/env.sh"

bin="$root/target/release/gridwatch"
out="$root/target/demo"
mkdir -p "$out"
export GRIDWATCH_LOG="${GRIDWATCH_LOG:-warn}"

echo
echo "== gridwatch demo: detection on the sample media =="
dog=$("$bin" media path dog.jpg)
"$bin" detect "$dog" --annotate "$out/dog-annotated.jpg" >"$out/dog.json"
echo "dog.jpg: $(grep -c '"label"' "$out/dog.json") objects -> $out/dog.json, $out/dog-annotated.jpg"
for clip in one-by-one-person-detection.mp4 car-detection.mp4 person-bicycle-car-detection.gif; do
  path=$("$bin" media path "$clip")
  echo
  "$bin" replay --config "$root/scripts/demo.toml" --input "$path" \
    --start-time 2026-11-24T20:00:00+08:00 --out "$out/${clip%.*}.jsonl"
  echo "  -> $out/${clip%.*}.jsonl"
done
echo
echo "car-detection.mp4 is filmed straight down: YOLOX-Nano (COCO) sees those cars as"
echo "'cell phone' or 'suitcase'. gridwatch reports what the model says (see ../shared/README.md)."
