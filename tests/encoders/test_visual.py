"""The visual index: built part by part, rebuilt incrementally, similar products without variants, photo uploads."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from pinlanding.collections.parts import read_all, write_parts
from pinlanding.collections.schemas import EMBEDDINGS, PRODUCTS, VISUAL_INDEX
from pinlanding.encoders import visual
from pinlanding.encoders.visual import PhotoError, VisualIndex, build_visual_index, decode_upload, embed_photo


def _photo(path: Path, rgb: tuple[int, int, int]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (30, 40), rgb).save(path, format="JPEG")
    return str(path)


def catalogue(root: Path, titles: dict[str, tuple[str, tuple[int, int, int]]]) -> pa.Table:
    rows = [{"product_id": pid, "title": title, "description": None, "merchant_tags": None, "brand": "Acme",
             "price": 10.0, "currency": "INR", "image_path": _photo(root / "img" / f"{pid}.jpg", rgb),
             "content_hash": f"h-{title}-{rgb}", "source_row": i} for i, (pid, (title, rgb)) in enumerate(titles.items())]
    return pa.Table.from_pylist(rows, schema=PRODUCTS)


def embeddings(products: pa.Table, vectors: dict[str, list[float]]) -> pa.Table:
    ids = products["product_id"].to_pylist()
    return pa.Table.from_pylist([{"product_id": pid, "content_hash": h, "model_version": "v1",
                                  "embedding": vectors[pid]} for pid, h in zip(ids, products["content_hash"].to_pylist())],
                                schema=EMBEDDINGS)


def write_run(root: Path, products: pa.Table, vectors: dict[str, list[float]], parts: int = 2) -> tuple[Path, Path]:
    """Catalogue and embeddings as co-partitioned part folders (``parts`` parts)."""
    cuts = np.array_split(np.arange(products.num_rows), parts)
    names = [f"part-{i:05d}" for i in range(parts)]
    write_parts(root / "products.parquet", {n: products.take(c) for n, c in zip(names, cuts)}, PRODUCTS)
    emb = embeddings(products, vectors)
    write_parts(root / "embeddings.parquet", {n: emb.take(c) for n, c in zip(names, cuts)}, EMBEDDINGS)
    return root / "products.parquet", root / "embeddings.parquet"


def test_similar_leaves_out_the_products_own_variants_and_repeats(tmp_path):
    products = catalogue(tmp_path, {
        "a": ("Red Dress", (200, 0, 0)), "a-title": ("red  dress!", (190, 10, 0)),  # same brand + normalized title
        "a-photo": ("Crimson Frock", (200, 0, 0)),  # the same photo bytes as "a"
        "b": ("Scarlet Gown", (180, 20, 20)), "b2": ("Scarlet Gown", (170, 30, 30)),  # one group: one result
        "c": ("Blue Shirt", (0, 0, 200)), "d": ("Green Cap", (0, 200, 0))})
    vec = {"a": [1, 0, 0, 0.1], "a-title": [1, 0, 0, 0.12], "a-photo": [1, 0.01, 0, 0.1], "b": [0.9, 0.1, 0, 0],
           "b2": [0.9, 0.12, 0, 0], "c": [0, 1, 0, 0], "d": [0, 0, 1, 0]}
    prods, emb = write_run(tmp_path, products, vec)
    build_visual_index(emb, prods, tmp_path / "index.parquet")
    for backend in ("numpy", "faiss"):
        index = VisualIndex.load(tmp_path / "index.parquet", backend=backend, rerank=4)
        hits = index.similar("a", k=3)
        assert [pid for pid, _ in hits] == ["b", "c", "d"]
        assert hits[0][1] > hits[1][1]
        exact = VisualIndex.load(tmp_path / "index.parquet", backend=backend, method="exact")
        assert [pid for pid, _ in exact.similar("c", k=2)][0] in {"a", "a-title", "a-photo", "b", "b2", "d"}
    with pytest.raises(KeyError):
        index.similar("nope")


def test_products_sharing_the_querys_assigned_category_and_colour_rank_first(tmp_path):
    from pinlanding.collections.schemas import ASSIGNMENTS

    products = catalogue(tmp_path, {"q": ("Red Dress", (200, 0, 0)), "near": ("Red Shirt", (190, 0, 0)),
                                    "dress": ("Maroon Dress", (120, 0, 0)), "red-dress": ("Scarlet Dress", (100, 0, 0))})
    vec = {"q": [1, 0, 0], "near": [0.95, 0.05, 0], "dress": [0.9, 0.2, 0], "red-dress": [0.85, 0.3, 0]}
    graph = [("q", "category", "dress"), ("q", "color", "red"), ("near", "category", "shirt"), ("near", "color", "red"),
             ("dress", "category", "dress"), ("dress", "color", "maroon"), ("red-dress", "category", "dress"),
             ("red-dress", "color", "red"), ("red-dress", "color", "pink")]  # its less confident colour: pink
    rows = [{"product_id": p, "key": k, "value": v, "confidence": 0.4 if v == "pink" else 0.9, "source": "encoder"}
            for p, k, v in graph]
    prods, emb = write_run(tmp_path, products, vec, parts=1)
    write_parts(tmp_path / "assignments.parquet", {"part-00000": pa.Table.from_pylist(rows, schema=ASSIGNMENTS)},
                ASSIGNMENTS)
    build_visual_index(emb, prods, tmp_path / "index.parquet", tmp_path / "assignments.parquet")
    ranked = VisualIndex.load(tmp_path / "index.parquet", backend="numpy").similar("q", 3)
    assert [p for p, _ in ranked] == ["red-dress", "dress", "near"]  # category and colour, category, neither
    assert ranked[0][1] > 1.5
    plain = VisualIndex.load(tmp_path / "index.parquet", backend="numpy", facet_weights={}).similar("q", 3)
    assert [p for p, _ in plain] == ["near", "dress", "red-dress"]  # by cosine alone


def test_rebuilt_index_after_a_change_equals_a_fresh_build_and_reads_only_changed_photos(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    titles = {f"p{i}": (f"Item {i}", (i * 20 % 255, 50, 90)) for i in range(12)}
    vec = {pid: rng.normal(size=16).tolist() for pid in titles}
    prods, emb = write_run(tmp_path / "v1", catalogue(tmp_path / "v1", titles), vec)
    build_visual_index(emb, prods, tmp_path / "index.parquet")

    titles["p3"] = ("Item 3 renamed", (1, 2, 3))  # changed product: new content, photo and embedding
    del titles["p7"]  # a product leaves the catalogue
    vec["p3"] = rng.normal(size=16).tolist()
    changed = catalogue(tmp_path / "v2", titles)
    prods, emb = write_run(tmp_path / "v2", changed, vec)
    read, digest = [], visual.file_digest
    monkeypatch.setattr(visual, "file_digest", lambda path: read.append(path) or digest(path))
    counts = build_visual_index(emb, prods, tmp_path / "index.parquet")
    assert read == [str(tmp_path / "v2" / "img" / "p3.jpg")]  # only the changed product's photo is read
    assert counts == {"visual_index_rows": 11, "visual_index_reused": 10}

    build_visual_index(emb, prods, tmp_path / "fresh.parquet")
    incremental, fresh = read_all(tmp_path / "index.parquet", VISUAL_INDEX), read_all(tmp_path / "fresh.parquet", VISUAL_INDEX)
    # photo digests reused from v1 are of v1's files, whose bytes are the same as v2's for unchanged products
    assert incremental.equals(fresh)
    assert sorted(incremental["product_id"].to_pylist()) == sorted(titles)
    assert visual.index_part(EMBEDDINGS.empty_table(), changed).num_rows == 0  # an empty part stays empty
    a = VisualIndex.load(tmp_path / "index.parquet", backend="numpy").similar("p0", 5)
    b = VisualIndex.load(tmp_path / "fresh.parquet", backend="numpy").similar("p0", 5)
    assert a == b


def _jpeg(rgb=(200, 10, 10), size=(30, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, format="JPEG")
    return buf.getvalue()


def test_upload_decoding_is_strict_and_matches_catalogue_decoding(tmp_path):
    from pinlanding.encoders.data import decode_image

    path = tmp_path / "p.jpg"
    path.write_bytes(_jpeg())
    assert np.array_equal(decode_upload(path.read_bytes(), (16, 12), 10**6), decode_image(str(path), (16, 12))[0])
    png = io.BytesIO()
    Image.new("RGB", (9, 7), (0, 90, 0)).save(png, format="PNG")
    assert decode_upload(png.getvalue(), (8, 6), 10**6).shape == (8, 6, 3)
    for bad in (b"not an image at all", _jpeg()[:200], b"\x89PNG\r\n\x1a\n" + b"\0" * 50):
        with pytest.raises(PhotoError) as err:
            decode_upload(bad, (8, 6), 10**6)
        assert err.value.status == 422
    for side, refusal in ((2_000, "at most 1,000,000 pixels"), (12_000, "decompression bomb")):
        bomb = io.BytesIO()  # millions of pixels that compress to a few kB
        Image.new("1", (side, side)).save(bomb, format="PNG")
        assert len(bomb.getvalue()) < 100_000
        with pytest.raises(PhotoError, match=refusal) as err:
            decode_upload(bomb.getvalue(), (8, 6), 10**6)
        assert err.value.status == 413


def test_photo_query_embeds_with_the_product_tower(trained_run):
    """A catalogue photo, uploaded alone (no text), finds products of its colour among the catalogue's."""
    from pinlanding.collections.artifacts import read_table
    from pinlanding.encoders.bundle import load_bundle
    from pinlanding.encoders.clip import build_tokenizer
    from pinlanding.encoders.data import decode_images, product_text

    bundle = load_bundle(trained_run.dir("encoder"), device="cpu")
    size = visual.photo_size(bundle)
    products = read_table(trained_run.products, PRODUCTS).to_pylist()
    pixels, has_image, _ = decode_images([p["image_path"] for p in products], size, threads=1)
    tokens = build_tokenizer(bundle.model.spec)([product_text(p["title"], p["merchant_tags"]) for p in products])
    vectors = bundle.encode_products(pixels, has_image, tokens)
    table = pa.table({"product_id": [p["product_id"] for p in products], "content_hash": [p["content_hash"] for p in products],
                      "variant_key": [p["product_id"] for p in products], "image_digest": [None] * len(products),
                      "facets": pa.array([[]] * len(products), pa.list_(pa.string())),
                      "embedding": pa.array(vectors.tolist(), pa.list_(pa.float32())),
                      "code": [c.tobytes() for c in visual.binarize(vectors)]})
    index = VisualIndex(backend="numpy", method="exact").fit(table)
    colour = {p["product_id"]: p["title"].split()[2] for p in products}  # "Acme Women Red Dress"
    agree = []
    for p in products[:8]:
        query = embed_photo(bundle, decode_upload(Path(p["image_path"]).read_bytes(), size, 10**6)[None])
        assert query.shape == (1, vectors.shape[1]) and np.isclose(np.linalg.norm(query), 1.0, atol=1e-3)
        hits = index.search(query, 5)[0]
        agree += [colour[pid] == colour[p["product_id"]] for pid, _ in hits]
    assert np.mean(agree) >= 0.8
