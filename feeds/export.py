"""Bulk exports of the published feeds, streamed: NDJSON (one collection a line) and Parquet (row groups).

Both carry every collection with its ranked products (rank, id, score, title, brand, price, currency,
image and product URLs where the catalogue has them) and the run id, so an export is one consistent
version. Neither holds the whole export in memory: NDJSON is written line by line, Parquet a row group of
``rows_per_group`` collections at a time.
"""
from __future__ import annotations

import io
import json
from typing import Any, Callable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

ITEM = pa.struct([("rank", pa.int32()), ("product_id", pa.string()), ("score", pa.float64()),
                  ("title", pa.string()), ("brand", pa.string()), ("price", pa.float64()),
                  ("currency", pa.string()), ("image_url", pa.string()), ("product_url", pa.string())])
EXPORT = pa.schema([
    ("run_id", pa.string()), ("topic_id", pa.string()), ("slug", pa.string()), ("title", pa.string()),
    ("query", pa.string()), ("attributes", pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))),
    ("aliases", pa.list_(pa.string())), ("judge_score", pa.float64()), ("size", pa.int64()),
    ("products", pa.list_(ITEM)),
])

Row = Callable[[dict[str, Any]], dict[str, Any]]  # feed -> export row (see feeds.api)


def ndjson(feeds: Sequence[dict[str, Any]], row: Row) -> Iterator[bytes]:
    for f in feeds:
        yield (json.dumps(row(f), ensure_ascii=False, separators=(",", ":")) + "\n").encode()


class _Sink(io.RawIOBase):
    """A write-only file that hands back what was written since the last :meth:`drain`."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.chunks.append(data)
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def drain(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


def parquet(feeds: Sequence[dict[str, Any]], row: Row, rows_per_group: int = 256) -> Iterator[bytes]:
    sink = _Sink()
    writer = pq.ParquetWriter(sink, EXPORT, compression="zstd")
    try:
        for start in range(0, len(feeds), rows_per_group):
            rows = [row(f) for f in feeds[start:start + rows_per_group]]
            writer.write_table(pa.Table.from_pylist(rows, schema=EXPORT))
            chunk = sink.drain()
            if chunk:
                yield chunk
    finally:
        writer.close()
    yield sink.drain()
