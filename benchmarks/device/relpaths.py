"""Copy a run's catalog/products.parquet into one uncompressed Parquet file with image_path relative to IMAGE_ROOT."""
# Usage: python relpaths.py RUN_DIR/catalog/products.parquet IMAGE_ROOT OUT.parquet
# (the device's r1m.yaml sets catalog.image_root to where the photos unpack; absolute paths of this machine
# would not resolve there). Every photo path must lie under IMAGE_ROOT and exist. Uncompressed, because xz
# then packs the bundle tighter than it packs snappy pages.
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from pinlanding.collections.artifacts import read_table, stamp
from pinlanding.collections.schemas import PRODUCTS

src, root, out = sys.argv[1], os.path.realpath(sys.argv[2]), sys.argv[3]
t = read_table(src, PRODUCTS)  # a folder of parts or one file, schema version checked
rel, bad = [], 0
for p in t["image_path"].to_pylist():
    if p is None:
        rel.append(None)
        continue
    a = os.path.realpath(p if os.path.isabs(p) else os.path.join(root, p))
    r = os.path.relpath(a, root)
    if r.startswith("..") or not os.path.exists(a):
        bad += 1
    rel.append(r)
if bad:
    sys.exit(f"relpaths: {bad} photo paths are missing or outside {root}")
t = t.set_column(t.schema.get_field_index("image_path"), "image_path", pa.array(rel, pa.string()))
pq.write_table(stamp(t, PRODUCTS), out, compression="none", row_group_size=len(t) or 1)
print(f"relpaths: {len(t)} products -> {out} (image_path relative to {root})")
