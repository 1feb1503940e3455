"""The merchandisers' review app (FastAPI, server-rendered, no JavaScript).

Pages: ``/`` (keys, reviewer name), ``/values?key=K`` (canonical values with counts, merged variants,
sample photos, text/photo sources, approve/reject/rename/merge/split; search, status filter, sorting),
``/value?key=K&value=V`` (its products, paged, by source and confidence), ``/topics`` (search and filters
by text, key, status, published, size, judge score; accept/reject), ``/topic?id=T`` (the feed it will
publish or why not, its page, the judge's reason; pin, exclude, retitle, publish window), ``/bulk`` (one
decision for a whole filtered selection, after a confirmation showing the count), ``/history`` (the
decisions log, each entry with who and when, and undo back to pending), ``/image?pid=ID`` (a product
photo, only for product ids present in ``catalog/products.parquet``), ``/site/...`` (the run's pages).
Decisions go through :class:`~pinlanding.vocab.decisions.DecisionStore` (append-only, locked) and take
effect at the next run, which reruns only the stages they change.

Security: loopback by default; any other address needs a token (cookie after ``?token=``, or a
``Authorization: Bearer`` header). Every form carries a CSRF token, all text is autoescaped by Jinja2,
and the Content-Security-Policy forbids scripts.

Modules: :mod:`.pages` (the pages), :mod:`.decide` (the forms that record decisions), :mod:`.auth` (token,
headers, form tokens, form parsing), :mod:`.data` (the run's artifacts as the pages need them), :mod:`.context`
(what the routes share, and the page renderer); this module assembles the app and serves it.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from pinlanding.collections.layout import RunLayout
from pinlanding.collections.net import is_loopback
from pinlanding.vocab.decisions import DecisionStore, decisions_path
from pinlanding.vocab.review import decide, pages
from pinlanding.vocab.review.auth import MIN_TOKEN_CHARS, Refused, new_form_token, refused, token_guard
from pinlanding.vocab.review.context import Review
from pinlanding.vocab.review.data import ReviewData, run_settings

__all__ = ["create_app", "is_loopback", "serve_review"]


def create_app(layout: RunLayout, token: str | None = None, decisions_file: str | Path | None = None,
               samples: int | None = None) -> FastAPI:
    """The review app for one run folder (``token``: required from every request, beyond loopback)."""
    configured, default_samples = run_settings(layout)
    app = FastAPI(title="pinlanding review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.review = Review(layout, DecisionStore(decisions_file or decisions_path(layout, configured)),
                              ReviewData(layout, samples if samples is not None else default_samples),
                              new_form_token())
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parents[1] / "static")), name="static")
    if (layout.root / "site").is_dir():  # the run's landing pages, linked from each topic
        app.mount("/site", StaticFiles(directory=str(layout.root / "site"), html=True), name="site")
    app.middleware("http")(token_guard(token))
    app.add_exception_handler(Refused, refused)
    app.include_router(pages.router)
    app.include_router(decide.router)
    return app


def serve_review(layout: RunLayout, host: str = "127.0.0.1", port: int = 8766, token: str | None = None) -> None:
    """Serve the review app; beyond loopback a token is required."""
    if not is_loopback(host) and not token:
        raise ValueError(f"listening on {host} exposes the review app: pass --token (or PINLANDING_REVIEW_TOKEN)")
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"the review token must be at least {MIN_TOKEN_CHARS} characters "
                         "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
    if not (layout.root / "vocabulary" / "vocabulary.parquet").exists():
        raise FileNotFoundError(f"no vocabulary in {layout.root}; run `pinlanding stage vocab --out {layout.root}` first")
    import uvicorn

    uvicorn.run(create_app(layout, token=token), host=host, port=port, log_level="warning")
