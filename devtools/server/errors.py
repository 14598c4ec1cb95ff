"""The server's error hierarchy: TF Serving's status codes, mapped to gRPC and HTTP.

Every request-level failure is a `ServingError` subclass named after the canonical status code
TF Serving returns for it (``absl::StatusCode``). The gRPC layer aborts with ``code``; the REST
layer answers ``{"error": message}`` with the HTTP status TF Serving's ``http_server.cc`` maps that
code to (`http_status`). Start-up problems (bad flags, unreadable config files) are
`ServerConfigError`, which the CLI prints and exits on.
"""

from __future__ import annotations

import grpc


class ServerConfigError(Exception):
    """A flag or configuration file is invalid; the message names it and says what to do."""


# Messages quote what the client sent (a signature name, a model name, a path): a 50 MB
# signature_name must not come back as a 50 MB error. TF Serving echoes them whole; this server
# keeps the first MAX_MESSAGE_CHARS characters and says how many it left out.
MAX_MESSAGE_CHARS = 4096


def bounded(message: str) -> str:
    """`message`, cut to MAX_MESSAGE_CHARS characters with a note of the rest."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[:MAX_MESSAGE_CHARS]}... ({len(message) - MAX_MESSAGE_CHARS} more characters)"


class ServingError(Exception):
    """A request failed with one of TF Serving's canonical status codes."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        message = bounded(message)
        super().__init__(message)
        self.message = message

    @property
    def code_name(self) -> str:
        """The code's name as TF Serving prints it (``INVALID_ARGUMENT``, ``NOT_FOUND``...)."""
        return self.code.name

    @property
    def code_number(self) -> int:
        """The numeric code (``tensorflow.error.Code`` and gRPC share the numbering)."""
        return int(self.code.value[0])

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def __str__(self) -> str:
        return self.message


class Cancelled(ServingError):
    code = grpc.StatusCode.CANCELLED


class Unknown(ServingError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(ServingError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(ServingError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(ServingError):
    code = grpc.StatusCode.NOT_FOUND


class ResourceExhausted(ServingError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(ServingError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unimplemented(ServingError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(ServingError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(ServingError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(ServingError):
    code = grpc.StatusCode.DATA_LOSS


# tensorflow_serving/model_servers/http_server.cc ToHTTPStatusCode, code for code.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
