"""Rewrite every jar and zip under the given folders with STORED entries, so that xz compresses them far better."""
# Same entries, names, order, times and attributes. The JVM and zipimport read stored entries as well as deflated
# ones; xz compresses the raw class and .py files far better than deflated ones. Usage: python3 store_jars.py DIR...
import os
import pathlib
import sys
import zipfile

for root in sys.argv[1:]:
    for p in sorted(q for q in pathlib.Path(root).rglob("*") if q.suffix in (".jar", ".zip") and q.is_file()):
        tmp = p.with_name(p.name + ".tmp")
        with zipfile.ZipFile(p) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zout:
            zout.comment = zin.comment
            for info in zin.infolist():
                data = zin.read(info)
                ni = zipfile.ZipInfo(info.filename, info.date_time)
                ni.compress_type = zipfile.ZIP_STORED
                ni.external_attr, ni.create_system, ni.comment, ni.extra = (
                    info.external_attr, info.create_system, info.comment, info.extra)
                zout.writestr(ni, data)
        st = p.stat()
        os.replace(tmp, p)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
