#!/usr/bin/env bash
# Before/after of a change: interleaved `python -m benchmarks.run --quick`
# runs of an earlier revision (its own benchmark code, in a git worktree) and
# of this checkout, then their ratios to InMemorySaver side by side.
#   bash benchmarks/ab_quick.sh REV [ROUNDS] [SAVER ...]
set -euo pipefail
cd "$(dirname "$0")/.."
rev=$1; rounds=${2:-2}; shift $(( $# > 1 ? 2 : 1 ))
savers=("$@"); [ ${#savers[@]} -gt 0 ] || savers=(InMemorySaver 'Hybrid[postgres]' 'Hybrid[sqlite]')
out=$(mktemp -d /tmp/ab-quick.XXXX)
git worktree add -f -q "$out/before-tree" "$rev"
trap 'git worktree remove --force "$out/before-tree"' EXIT
for round in $(seq 1 "$rounds"); do
  for side in before after; do
    dir=$PWD; [ $side = before ] && dir=$out/before-tree
    (cd "$dir" && PYTHONPATH=$dir python -m benchmarks.run --quick --only "${savers[@]}" \
      --out "$out/$side$round" --no-plots --no-progress > "$out/$side$round.log" 2>&1)
  done
done
python -m benchmarks.ab_summary "$out" "$rounds"
