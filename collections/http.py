"""Helpers shared by the project's web apps (the feed API, the review app)."""
from __future__ import annotations

from fastapi import HTTPException, Request


async def read_body(request: Request, limit: int, what: str = "body") -> bytes:
    """The request body, refused with 413 from its Content-Length or as soon as it streams past ``limit``
    bytes, before it is held whole in memory."""
    declared = request.headers.get("content-length", "")
    if declared and (not declared.isdigit() or int(declared) > limit):
        raise HTTPException(413, f"{what} over {limit:,} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"{what} over {limit:,} bytes")
    return bytes(body)
