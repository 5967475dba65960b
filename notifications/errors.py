"""The one error type services raise; edges turn it into an `error` frame or a JSON 4xx."""

from __future__ import annotations


class ServiceError(Exception):
    status = 400

    def __init__(self, code: str, message: str, *, fields: dict[str, str] | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields or {}
        if status is not None:
            self.status = status


class NotFound(ServiceError):
    """Also the answer for what exists but is not the caller's: it reveals nothing."""

    status = 404
