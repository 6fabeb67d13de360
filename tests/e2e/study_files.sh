#!/usr/bin/env bash
# study_files.sh DIR SCHEME...: ./launch/study wrote into DIR a table with a row per scheme,
# a non-empty plot, and numbers for each scheme (NMI for each MoE layer, none for dense).
set -euo pipefail
dir=$1
shift
test -s "$dir/study.png" || { echo "no plot $dir/study.png"; exit 1; }
rows=$(grep -c '^| [a-z]' "$dir/study.md" || true)
((rows == $# + 1)) || { echo "$dir/study.md: $rows table rows, expected header + $#"; exit 1; }
for scheme in "$@"; do
  python3 - "$dir/study.json" "$scheme" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))
scheme = sys.argv[2]
r = results[scheme]
layers = 0 if scheme.startswith("dense") else 2
assert len(r["nmi"]) == layers, f"{scheme}: NMI for {len(r['nmi'])} layers, expected {layers}"
assert all(0 <= v <= 1 for v in r["nmi"]), f"{scheme}: NMI outside [0, 1]: {r['nmi']}"
assert r["lm_loss"] > 0 and r["tokens_per_s"] > 0, f"{scheme}: {r}"
PY
done
echo "study files complete for: $*"
