"""Copy a run's catalog/products.parquet into one uncompressed Parquet file with image_path relative to IMAGE_ROOT."""
# Usage: python relpaths.py RUN_DIR/catalog/products.parquet IMAGE_ROOT OUT.parquet
# (the device's r1m.yaml sets catalog.image_root to where the photos unpack; absolute paths of this machine
# would not resolve there). Every photo path must lie under IMAGE_ROOT and exist; schema metadata is kept.
import os
import sys

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

src, root, out = sys.argv[1], os.path.realpath(sys.argv[2]), sys.argv[3]
t = ds.dataset(src, format="parquet").to_table()
meta = pq.read_schema(next(p for p in sorted(ds.dataset(src, format="parquet").files))).metadata
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
i = t.schema.get_field_index("image_path")
t = t.set_column(i, t.schema.field(i), pa.array(rel, pa.string())).replace_schema_metadata(meta)
pq.write_table(t, out, compression="none", row_group_size=len(t) or 1)
print(f"relpaths: {len(t)} products -> {out} (image_path relative to {root})")
