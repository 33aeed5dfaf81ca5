"""Graph's error answers, raised by the backend's rules and the HTTP faces alike and written by the dispatcher
as Graph's error body (``http/wire.py``)."""

from __future__ import annotations


class GraphError(Exception):
    """An error answer: HTTP status, Graph code and message, optional extra headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def bad_request(code: str, message: str) -> GraphError:
    return GraphError(400, code, message)
