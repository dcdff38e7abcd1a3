#!/usr/bin/env bash
# README's first command: set everything up, then run gridwatch on the sample media with the
# real model: detections on the shared clips, and incidents (with clips and snapshots) on
# clips derived from them. Outputs land in target/demo/; the review page is served by
#   target/release/gridwatch run --no-cameras --config scripts/demo.toml
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
GRIDWATCH_PROFILE=release "$root/scripts/setup.sh"
. "$root/scripts/env.sh"

bin="$root/target/release/gridwatch"
out="$root/target/demo"
mkdir -p "$out"
export GRIDWATCH_LOG="${GRIDWATCH_LOG:-warn}"
config="$root/scripts/demo.toml"
media() { "$bin" media path "$1"; }

echo
echo "== 1. detection on the sample media =="
"$bin" detect "$(media dog.jpg)" --annotate "$out/dog-annotated.jpg" >"$out/dog.json"
echo "dog.jpg: $(grep -c '"label"' "$out/dog.json") objects -> $out/dog.json, $out/dog-annotated.jpg"
for clip in one-by-one-person-detection.mp4 car-detection.mp4; do
  echo
  "$bin" replay --config "$config" --camera hall --input "$(media "$clip")" \
    --start-time 2026-11-24T20:00:00+08:00 --out "$out/${clip%.*}.jsonl" --no-progress
done
echo "car-detection.mp4 is filmed straight down: YOLOX-Nano (COCO) sees those cars as"
echo "'cell phone' or 'suitcase'. gridwatch reports what the model says (../shared/README.md)."

echo
echo "== 2. incidents, with clips and snapshots =="
# The same derivations as the scenario suite (tests/scenarios/*/scenario.toml).
if [ ! -s "$out/parking.mp4" ]; then
  ffmpeg -v error -y -i "$(media person-bicycle-car-detection.gif)" -filter_complex \
    "[0]fps=12,format=yuv420p,split[a][b];[b]reverse[r];[a]tpad=stop_mode=clone:stop_duration=240[h];[h][r]concat=n=2:v=1:a=0,tpad=stop_mode=clone:stop_duration=45,noise=alls=4:allf=t[v]" \
    -map "[v]" -c:v libx264 -preset ultrafast -g 50 "$out/parking.mp4"
fi
if [ ! -s "$out/porch.mp4" ]; then
  ffmpeg -v error -y -loop 1 -framerate 5 -t 300 -i "$(media dog.jpg)" \
    -vf "noise=alls=4:allf=t,format=yuv420p" -c:v libx264 -preset ultrafast -g 50 "$out/porch.mp4"
fi
rm -rf "$out/data"
"$bin" replay --config "$config" --camera lot --input "$out/parking.mp4" --store \
  --start-time 2026-11-24T10:00:00+08:00 --out "$out/parking.jsonl" --no-progress
echo
"$bin" replay --config "$config" --camera porch --input "$out/porch.mp4" --store \
  --start-time 2026-11-24T23:00:00+08:00 --out "$out/porch.jsonl" --no-progress
echo
echo "incidents, clips and snapshots are in $out/data:"
find "$out/data/evidence" -type f | sed "s|^$root/||" | sort
[ -s "$out/web.password" ] || echo demo >"$out/web.password"
echo
echo "Review page (password: $(cat "$out/web.password")):"
echo "  $bin run --no-cameras --config scripts/demo.toml"
echo "  then open http://127.0.0.1:8080/"
