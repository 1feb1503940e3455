"""What the review app's routes share (one per app, in ``app.state.review``), and the page renderer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from pinlanding.collections.layout import RunLayout
from pinlanding.collections.text import key_form
from pinlanding.vocab.clustering import normalize_value
from pinlanding.vocab.decisions import Decision, DecisionStore, ReviewState
from pinlanding.vocab.review.auth import REVIEWER_COOKIE
from pinlanding.vocab.review.data import ReviewData
from pinlanding.vocab.workbench import number


def templates() -> Environment:
    """The pages' Jinja2 environment (autoescaped) with the ``q`` (query string) and ``num`` filters."""
    env = Environment(loader=PackageLoader("pinlanding.vocab", "templates"), autoescape=select_autoescape(default=True))
    env.filters["q"] = lambda params: urlencode(params)
    env.filters["num"] = number
    return env


@dataclass
class Review:
    """One run's review: its folder, its decisions, its artifacts, the templates and the form token."""

    layout: RunLayout
    store: DecisionStore
    data: ReviewData
    form_token: str
    env: Environment = field(default_factory=templates)

    def render(self, name: str, request: Request, code: int = 200, **ctx: Any) -> HTMLResponse:
        """A page, with what every page shows: the form token, the reviewer, the decisions in force."""
        state = ReviewState.from_decisions(self.store.read())
        ctx.update(csrf=self.form_token, reviewer=request.cookies.get(REVIEWER_COOKIE, ""), state=state,
                   decision_for=lambda key, value: _decision_for(state, key, value))
        return HTMLResponse(self.env.get_template(name).render(**ctx), status_code=code)


def current_review(request: Request) -> Review:
    return request.app.state.review


ReviewDep = Annotated[Review, Depends(current_review)]  # a route's parameter: the app's Review


def _decision_for(state: ReviewState, key: str, value: str) -> list[Decision]:
    """The decisions in force about one value (status and mapping), latest first."""
    target = (key_form(key), normalize_value(value))
    found = [d for d in (state.status.get(target), state.mapping.get(target)) if d is not None]
    return sorted(found, key=lambda d: d.at, reverse=True)
