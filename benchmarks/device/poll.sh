#!/bin/bash
# poll.sh [SECONDS]: watch the detached bench_stages.py for up to SECONDS (default 540), a short report every
# 60 s; returns early when it has ended. Then copies the results into $OUT (stages.jsonl, the tail of
# stages.log, gpu.log, the run's manifest.json, env.txt).
set -u
PFX=${PFX:-/tmp}
R=$PFX/r1m
LIMIT=${1:-540}
OUTD=${OUT:-$PFX/out}
mkdir -p "$OUTD"
cd "$R" 2>/dev/null || cd /   # python -c from the repo root would import its collections/ instead of the stdlib's
T0=$SECONDS
running() { [ -f "$R/bench.pid" ] && kill -0 "$(cat "$R/bench.pid")" 2>/dev/null; }
report() {
  echo "=== $(date -u +%T) +$((SECONDS - T0))s: bench $(running && echo running || echo ended)"
  [ -f "$R/stages.jsonl" ] && "${GO_PY:-python3}" -c "
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    print(f\"  {e['stage']:8} rc={e['rc']} wall={e['wall_s']}s stage={e.get('manifest_seconds')}s mem+{e.get('system_used_gib')}G gpu={e.get('gpu_used_gib')}G\")
" "$R/stages.jsonl" 2>/dev/null
  tail -c 3000 "$R/stages.log" 2>/dev/null | tr '\r' '\n' | grep -v '^\s*$' | tail -n 4 | cut -c1-200
  tail -n 1 "$R/gpu.log" 2>/dev/null
}
while :; do
  report
  running || break
  left=$((LIMIT - (SECONDS - T0)))
  [ "$left" -le 0 ] && break
  sleep $(( left < 60 ? left : 60 ))
done
cp "$R/stages.jsonl" "$OUTD/" 2>/dev/null
tail -n 400 "$R/stages.log" 2>/dev/null | tr '\r' '\n' | grep -v '^\s*$' | tail -n 400 | cut -c1-400 > "$OUTD/stages.log.tail"
cp "$R/gpu.log" "$OUTD/" 2>/dev/null
cp "$R/run/manifest.json" "$OUTD/" 2>/dev/null
{ echo "date: $(date -u +%FT%TZ)"; echo "started: $(cat "$R/started_utc" 2>/dev/null)"; echo "code digest: $(cat "$R/code.digest" 2>/dev/null)"
  echo "bench: $(running && echo running || echo ended)"
  "${GO_PY:-python3}" -c "import sys; print('python', sys.version.split()[0])"
  PYTHONPATH=$PFX/site "${GO_PY:-python3}" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" 2>&1 | tail -1
  nvidia-smi -L 2>&1; nproc; free -g | head -2; df -h "$PFX" | tail -1; du -sh "$R/run" 2>/dev/null
} > "$OUTD/env.txt"
ls -la "$OUTD"
