"""Typed errors of the service and their HTTP status, in one place.

Every failure a client can cause is a ``TempoError`` subclass carrying its HTTP status and a
stable ``code``. The gateway turns them (and FastAPI's own validation errors) into one error
body, the OpenAI one: ``{"error": {"message", "type", "param", "code"}}``. Workers report job
failures with the same codes so the gateway can re-raise them with the right status.
"""

from __future__ import annotations


class TempoError(Exception):
    status: int = 500
    code: str = "internal_error"
    type: str = "server_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class BadRequest(TempoError):
    status = 400
    code = "bad_request"
    type = "invalid_request_error"


class Unauthorized(TempoError):
    status = 401
    code = "invalid_api_key"
    type = "authentication_error"


class Forbidden(TempoError):
    status = 403
    code = "forbidden"
    type = "invalid_request_error"


class NotFound(TempoError):
    status = 404
    code = "not_found"
    type = "invalid_request_error"


class Conflict(TempoError):
    """The resource exists but is in the wrong state (a failed video, a deleted one)."""

    status = 409
    code = "conflict"
    type = "invalid_request_error"


class PayloadTooLarge(TempoError):
    status = 413
    code = "payload_too_large"
    type = "invalid_request_error"


class UnsupportedMedia(TempoError):
    status = 415
    code = "unsupported_media"
    type = "invalid_request_error"


class Unprocessable(TempoError):
    """Well-formed request whose content the model cannot take (corrupt video, question too long)."""

    status = 422
    code = "unprocessable"
    type = "invalid_request_error"


class Timeout(TempoError):
    status = 504
    code = "timeout"
    type = "server_error"


class Unavailable(TempoError):
    status = 503
    code = "unavailable"
    type = "server_error"


_BY_STATUS: dict[int, type[TempoError]] = {
    cls.status: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, UnsupportedMedia, Unprocessable, Timeout, Unavailable)
}

# Codes of models.errors.VideoError subclasses -> our HTTP class.
VIDEO_ERROR_STATUS: dict[str, int] = {
    "not_a_video": 415,
    "no_video_stream": 415,
    "corrupt_video": 422,
    "video_too_long": 413,
    "video_too_large": 413,
}


def from_status(status: int, message: str, code: str | None = None) -> TempoError:
    """Rebuild a typed error from a status and code reported by a worker."""
    cls = _BY_STATUS.get(status, TempoError)
    return cls(message, code=code)
