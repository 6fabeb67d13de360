#!/usr/bin/env bash
# report_files.sh RUN_DIR: the report wrote real PNG images and a markdown summary that
# names them and holds the last step's loss.
set -euo pipefail
run=$1
signature=$(printf '\211PNG\r\n\032\n' | od -An -tx1)
for image in loss.png router.png expert_load.png specialisation.png; do
  [[ $(head -c 8 "$run/$image" | od -An -tx1) == "$signature" ]] || { echo "FAIL: $run/$image is not a PNG"; exit 1; }
  grep -qF "($image)" "$run/report.md" || { echo "FAIL: report.md does not show $image"; exit 1; }
done
last_loss=$(tail -n 20 "$run/metrics.jsonl" | grep -v '"eval"' | tail -n 1 | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
printf -v rounded '%.4f' "$last_loss"
grep -qF "| $rounded |" "$run/report.md" || { echo "FAIL: report.md lacks the last loss $rounded"; exit 1; }
echo "report ok: 4 PNGs, report.md with last loss $rounded"
