"""Byte-plane shuffle of float32-heavy files (xz compresses the planes ~8-10% better than the raw file)."""
# python3 shuf4.py pack FILE...      # FILE -> FILE.s4 (8-byte size, then byte planes 0..3); FILE removed
# python3 shuf4.py unpack ROOT       # every *.s4 under ROOT back to its original file; .s4 removed
import os
import pathlib
import struct
import sys

import numpy as np


def pack(path: str) -> None:
    b = open(path, "rb").read()
    n = len(b)
    a = np.frombuffer(b + b"\0" * (-n % 4), dtype=np.uint8).reshape(-1, 4)
    with open(path + ".s4", "wb") as f:
        f.write(struct.pack("<Q", n))
        for i in range(4):
            f.write(np.ascontiguousarray(a[:, i]).tobytes())
    st = os.stat(path)
    os.utime(path + ".s4", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.remove(path)


def unpack(s4: str) -> str:
    raw = open(s4, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    planes = np.frombuffer(raw[8:], dtype=np.uint8).reshape(4, -1)
    out = s4[:-3]
    with open(out, "wb") as f:
        f.write(np.ascontiguousarray(planes.T).tobytes()[:n])
    st = os.stat(s4)
    os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.remove(s4)
    return out


if __name__ == "__main__":
    if sys.argv[1] == "pack":
        for p in sys.argv[2:]:
            pack(p)
    else:
        for p in sorted(pathlib.Path(sys.argv[2]).rglob("*.s4")):
            print("unshuffled", unpack(str(p)))
