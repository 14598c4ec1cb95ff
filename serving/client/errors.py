"""The client's exceptions: one small hierarchy, so callers can catch at the level they need.

```
ClientError                  anything this package raises on purpose
├── InvalidInput             bad input given to the client (files, arrays, names); nothing was sent
├── ConnectionFailed         no answer: cannot connect, connection dropped, or timed out
├── ServerError              the server answered with an error ({"error": ...} or a gRPC status)
└── UnexpectedResponse       the server answered "OK" with a body that is not TF Serving's shape
```

`ServerError.status` is the HTTP status code (int) for REST and the gRPC status code name (str,
e.g. ``"NOT_FOUND"``) for gRPC, exactly as the server sent it; `message` is the server's text.
"""

from __future__ import annotations

__all__ = [
    "ClientError",
    "ConnectionFailed",
    "InvalidInput",
    "ServerError",
    "UnexpectedResponse",
]


class ClientError(Exception):
    """Base class of every error the client raises on purpose."""


class InvalidInput(ClientError, ValueError):
    """The caller's input cannot be sent: a bad file, array shape, model name or option mix."""


class ConnectionFailed(ClientError):
    """The server could not be reached or did not answer in time; the request may be retried."""


class ServerError(ClientError):
    """The server answered with an error.

    `status` is the HTTP status (REST) or the gRPC status code name (gRPC); `message` is the
    server's own error text (TF Serving's ``{"error": ...}`` value or the gRPC details);
    `notes` what the client knows that may explain it (e.g. inputs whose shape differs from the
    signature's), empty unless a caller adds some.
    """

    def __init__(self, status: int | str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.notes: list[str] = []


class UnexpectedResponse(ClientError):
    """The server answered with success but the body is not what TF Serving sends."""
