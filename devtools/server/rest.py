"""TF Serving's REST API (``/v1/models/...``) and the Prometheus page, over HTTP/1.1.

`RestApi.handle` is the request handler of ``http_rest_api_handler.cc``: the same route regexes,
the same order of checks, the same status codes and ``{"error": ...}`` messages; it takes
(method, path, body) and returns (status, content type, body), so most tests need no socket.

`RestServer` puts it on a port with the standard library's ``ThreadingHTTPServer``: no extra
dependency, keep-alive connections, a thread per connection (requests from all of them feed the
same batcher). An async framework would not make the model faster, and the threads spend their
time in TensorFlow, which releases the GIL. Bodies larger than ``max_request_bytes`` are refused
with 413 before they are read; at most ``num_threads`` requests are processed at once.

Against hostile clients (docs/hostile-input.md): at most ``max_connections`` connections are
open (when full, the one waiting longest for a request is closed to make room; 503 when every one
is mid-request); a request's line and headers, and then its body, must each arrive within a total
deadline (408); a body holds budget from the shared `ByteBudget` for the bytes that have arrived,
then for 1/16 of what parsing and running it may cost (`devtools.server.costs`; 429 when it is
spent); and every error the HTTP layer itself produces (400/408/414/431/501/505) is
``{"error": ...}`` JSON like the API's own, never http.server's HTML page.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from devtools.server import inference, json_examples, json_parse, json_tensor
from devtools.server.costs import json_cost
from devtools.server.errors import InvalidArgument, ServingError
from devtools.server.limits import Account, ByteBudget, account
from devtools.server.manager import ModelManager
from devtools.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from devtools.server.metrics import Metrics
from devtools.server.servable import DEFAULT_SIGNATURE
from devtools.server.service import (
    RequestRecord,
    metadata_json,
    metadata_response,
    status_json,
    status_response,
)

log = logging.getLogger(__name__)

JSON = "application/json"
# http_rest_api_util.cc kPredictionApiGegex / kModelStatusApiRegex and the handler's path regex.
_PREDICT = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
_API_PATH = re.compile(r"/v1/.*", re.IGNORECASE)
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes


class RestApi:
    """Socket-free REST handler."""

    def __init__(
        self,
        manager: ModelManager,
        metrics: Metrics | None = None,
        metrics_path: str | None = None,
    ) -> None:
        self.manager = manager
        self.metrics = metrics
        self.metrics_path = metrics_path

    def handle(self, method: str, path: str, body: bytes) -> Response:
        if self.metrics_path is not None and self.metrics is not None and path == self.metrics_path:
            return Response(200, METRICS_CONTENT_TYPE, self.metrics.render())
        if not _API_PATH.fullmatch(path):
            return Response(404, JSON, json_parse.error_json(f"Not found: {method} {path}"))
        record = RequestRecord(
            self.metrics, api="", entrypoint="REST", known_models=self.manager.model_names
        )
        try:
            payload = self._process(method, path, body, record)
        except ServingError as exc:
            record.finish(exc.code_name)
            return Response(exc.http_status, JSON, json_parse.error_json(exc.message))
        except RecursionError:
            record.finish("INVALID_ARGUMENT")
            return Response(400, JSON, json_parse.error_json("Request nests too deeply"))
        except Exception as exc:  # a bug must cost one request, never the server
            log.exception("REST %s %s failed", method, path)
            record.finish("INTERNAL")
            return Response(500, JSON, json_parse.error_json(f"Internal error: {exc}"))
        record.finish("OK")
        return Response(200, JSON, payload)

    def _process(self, method: str, path: str, body: bytes, record: RequestRecord) -> bytes:
        """HttpRestApiHandler::ProcessRequest."""
        malformed = InvalidArgument(f"Malformed request: {method} {path}")
        if method == "POST":
            match = _PREDICT.fullmatch(path)
        elif method == "GET":
            match = _STATUS.fullmatch(path)
        else:
            raise malformed
        if match is None:
            raise malformed
        raw_name, version_text, raw_label, verb = match.groups()
        name = unquote(raw_name) if raw_name else ""
        version = None
        if version_text:
            version = int(version_text)
            if version > _INT64_MAX:
                raise InvalidArgument(f"Failed to convert version: {version_text} to numeric.")
        label = unquote(raw_label) if raw_label else None
        record.model = name
        if method == "POST":
            record.api = verb
            if verb == "predict":
                return self._predict(name, version, label, body, record)
            if verb in ("classify", "regress"):
                return self._classify_regress(verb, name, version, label, body, record)
            raise malformed  # the regex is case-insensitive, the dispatch is not (as TF Serving)
        if not name:
            raise InvalidArgument("Missing model name in request.")
        if verb == "metadata":
            record.api = "metadata"
            with self.manager.handle(name, version, label) as servable:
                record.served(servable)
                return metadata_json(metadata_response(servable))
        record.api = "status"
        return status_json(status_response(self.manager, name, version, label))

    def _predict(
        self, name: str, version: int | None, label: str | None, body: bytes, record: RequestRecord
    ) -> bytes:
        doc = json_parse.parse_json(body)
        signature_name = json_parse.signature_name_of(doc)
        with self.manager.handle(name, version, label) as servable:
            record.served(servable)
            key = signature_name or DEFAULT_SIGNATURE
            signature = servable.signatures.get(key)
            if signature is None:  # GetInfoMap's check comes before the predictor's
                raise InvalidArgument(f'Serving signature name: "{key}" not found in signature def')
            inputs, fmt = json_tensor.predict_inputs_from_json(
                doc, signature.input_dtypes, signature_name, body
            )
            _, outputs = servable.predict(signature_name, inputs)
        return json_tensor.predict_response_json(outputs, fmt)

    def _classify_regress(
        self,
        verb: str,
        name: str,
        version: int | None,
        label: str | None,
        body: bytes,
        record: RequestRecord,
    ) -> bytes:
        doc = json_parse.parse_json(body)
        signature_name = json_parse.signature_name_of(doc)
        examples = json_examples.examples_from_json(doc)
        with self.manager.handle(name, version, label) as servable:
            record.served(servable)
            if verb == "classify":
                classes = inference.classify(servable, signature_name, examples)
                return json_examples.classification_json(classes)
            values = inference.regress(servable, signature_name, examples)
            return json_examples.regression_json(values)


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a cap on open connections (each one costs a thread).

    When the cap is reached, the connection that has waited longest for a request's first byte
    (an idle keep-alive one, or a new one that sent nothing yet) is closed to make room, so idle
    sockets cannot hold the cap; only when every connection is mid-request is a new one refused.
    """

    daemon_threads = True
    request_queue_size = 256  # the default of 5 drops connections under a burst of clients
    allow_reuse_address = True
    max_connections = 256

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        # Connections waiting for the first byte of a request, and since when.
        self.waiting: dict[socket.socket, float] = {}

    def process_request(self, request: socket.socket, client_address: object) -> None:
        with self._open_lock:
            full = len(self._open) >= self.max_connections
            if full and self.waiting:
                idle = min(self.waiting, key=self.waiting.__getitem__)
                del self.waiting[idle]
                self._open.discard(idle)
                with contextlib.suppress(OSError):
                    idle.shutdown(socket.SHUT_RDWR)  # its thread sees EOF and ends
                full = False
            if not full:
                self._open.add(request)
        if full:
            _refuse_connection(request, self.max_connections)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(request)
            self.waiting.pop(request, None)
        super().shutdown_request(request)

    def set_waiting(self, sock: socket.socket, waiting: bool) -> None:
        with self._open_lock:
            if not waiting:
                self.waiting.pop(sock, None)
            elif sock in self._open:
                self.waiting[sock] = time.monotonic()


def _refuse_connection(sock: socket.socket, cap: int) -> None:
    """Best effort 503 on a connection over the cap, from the accept thread: never block it."""
    body = json_parse.error_json(
        f"Too many open connections (--rest_api_max_connections={cap}); retry later"
    )
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with contextlib.suppress(OSError):
        sock.setblocking(False)
        sock.send(head + body)


class _DeadlineReader(io.RawIOBase):
    """The connection's read side with total deadlines for a request's headers and its body.

    A socket timeout bounds each recv, not their sum, so a client sending one byte every few
    seconds (slowloris) would hold its thread, or the body budget, forever. Each recv here waits
    at most for what is left of the current deadline: the headers' starts when the connection is
    accepted (first request) or at the first byte of a later request and ends when the headers
    are parsed; the body's starts then (`body_started`) and ends when the body is read. Between
    requests on a keep-alive connection the idle timeout applies, and the connection counts as
    waiting (`on_waiting`), so the accept loop may close it to make room.
    """

    def __init__(
        self,
        sock: socket.socket,
        idle_seconds: float,
        header_seconds: float,
        on_waiting: Callable[[bool], None] = lambda waiting: None,
    ) -> None:
        super().__init__()
        self._sock = sock
        self._idle = idle_seconds
        self._header_seconds = header_seconds
        self._on_waiting = on_waiting
        self._deadline: float | None = None
        self._arm_on_data = False
        self._waiting = False
        self.expired: str | None = None  # "headers" or "body" when that deadline passed
        self._phase = "headers"

    def readable(self) -> bool:
        return True

    def expect_request(self, first: bool) -> None:
        """Wait for the next request: the deadline runs from now on a new connection (so idle
        sockets cannot hold the connection cap), from its first byte on a keep-alive one."""
        self.expired, self._phase = None, "headers"
        if first:
            self._deadline, self._arm_on_data = time.monotonic() + self._header_seconds, False
        else:
            self._deadline, self._arm_on_data = None, True
        self._set_waiting(True)

    def headers_done(self) -> None:
        self._deadline, self._arm_on_data = None, False
        self._set_waiting(False)
        self._sock.settimeout(self._idle)

    def body_started(self, seconds: float) -> None:
        self._deadline, self._phase = time.monotonic() + seconds, "body"

    def body_done(self) -> None:
        self._deadline = None

    def _set_waiting(self, waiting: bool) -> None:
        if waiting != self._waiting:
            self._waiting = waiting
            self._on_waiting(waiting)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._deadline is None:
            timeout = self._idle
        else:
            timeout = self._deadline - time.monotonic()
            if timeout <= 0:
                self.expired = self._phase
                raise TimeoutError(f"request {self._phase} not received in time")
        self._sock.settimeout(timeout)
        try:
            n = self._sock.recv_into(buffer)
        except TimeoutError:
            self.expired = self._phase if self._deadline is not None else None
            raise
        if n:
            self._set_waiting(False)
        if n and self._arm_on_data:
            self._arm_on_data = False
            self._deadline = time.monotonic() + self._header_seconds
        return n


@dataclass(frozen=True)
class RestLimits:
    """What one REST port accepts; see devtools/server/flags.py for the flags behind each."""

    max_request_bytes: int
    num_threads: int
    max_connections: int = 256
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    idle_timeout_seconds: float = 60.0  # idle keep-alive connections close after this


class RestServer:
    """The REST API on a TCP port; `stop` drains in-flight requests before returning."""

    def __init__(
        self, api: RestApi, host: str, port: int, limits: RestLimits, budget: ByteBudget
    ) -> None:
        self.api = api
        self.limits = limits
        self.max_request_bytes = limits.max_request_bytes
        self.budget = budget
        self._slots = threading.BoundedSemaphore(limits.num_threads)
        self._busy = 0
        self._busy_cond = threading.Condition()
        self._connections: set[socket.socket] = set()
        self._stopping = False
        self._httpd = _HTTPServer((host, max(port, 0)), _make_handler(self))
        self._httpd.max_connections = limits.max_connections
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="rest",
            daemon=True,
        )
        self._thread.start()

    def stop(self, grace_seconds: float = 30.0) -> None:
        """Stop accepting, let in-flight requests finish, then close idle keep-alive sockets."""
        self._stopping = True
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._busy_cond:
            self._busy_cond.wait_for(lambda: self._busy == 0, timeout=grace_seconds)
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join()

    def _enter(self) -> None:
        self._slots.acquire()
        with self._busy_cond:
            self._busy += 1

    def _leave(self) -> None:
        with self._busy_cond:
            self._busy -= 1
            self._busy_cond.notify_all()
        self._slots.release()


_CONTENT_LENGTH = re.compile(r"[0-9]{1,20}")  # ASCII digits only: "²".isdigit() is True
_READ_CHUNK = 1 << 20


def _make_handler(server: RestServer) -> type[BaseHTTPRequestHandler]:
    limits = server.limits

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "TFServingLocal"
        timeout = limits.idle_timeout_seconds
        error_content_type = JSON

        def setup(self) -> None:
            super().setup()
            # Headers and body leave in two writes; without this, Nagle's algorithm holds the
            # body back until the client's delayed ACK (~40 ms per request on keep-alive).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = self.connection
            self._reader = _DeadlineReader(
                connection,
                limits.idle_timeout_seconds,
                limits.header_timeout_seconds,
                lambda waiting: server._httpd.set_waiting(connection, waiting),
            )
            self.rfile.close()  # drop makefile's reference, or closing the socket leaks the fd
            self.rfile = io.BufferedReader(self._reader)
            self._account: Account | None = None
            self._served_one = False
            server._connections.add(self.connection)

        def finish(self) -> None:
            server._connections.discard(self.connection)
            super().finish()

        def handle_one_request(self) -> None:
            self._reader.expect_request(first=not self._served_one)
            self._served_one = True
            # parse_request sets these; a read that times out before it leaves them unset
            self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
            super().handle_one_request()  # answers nothing when a read times out
            if self._reader.expired == "headers":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.send_error(
                        408,
                        "Request headers not received within "
                        f"{limits.header_timeout_seconds:g} s (--rest_api_header_timeout_in_ms)",
                    )

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            """Every error the HTTP layer itself produces (400/408/414/431/501...) as JSON.

            http.server writes an HTML page; TF Serving's clients parse ``{"error": ...}``.
            """
            self._reader.headers_done()  # a reply goes out under the idle timeout, not the deadline
            short = self.responses.get(code, ("Error", ""))[0]
            text = message or short
            self.log_error("code %d, message %s", code, text)
            self.close_connection = True
            self._reply(Response(code, JSON, json_parse.error_json(text)), close=True)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def do_OPTIONS(self) -> None:
            self._reader.headers_done()
            origin = self.headers.get("Origin", "")
            if re.match(r"https?://", origin):
                self._reply(Response(200, JSON, b""))
            else:
                error = json_parse.error_json("Origin header is missing in CORS preflight")
                self._reply(Response(400, JSON, error))

        def _serve(self, method: str) -> None:
            self._reader.headers_done()
            with account(server.budget, "Request") as acct:
                self._account = acct
                try:
                    body = self._read_body()
                except TimeoutError:
                    if self._reader.expired != "body":
                        raise
                    self._refuse(
                        408,
                        f"Request body not received within {limits.body_timeout_seconds:g} s "
                        "(--rest_api_body_timeout_in_ms)",
                    )
                    return
                finally:
                    self._reader.body_done()
                if body is None:
                    return
                try:
                    # What parsing it will allocate, held before it is parsed (costs.py).
                    acct.estimate(len(body) + json_cost(body))
                except ServingError as exc:
                    self._reply(Response(exc.http_status, JSON, json_parse.error_json(exc.message)))
                    return
                server._enter()
                try:
                    response = server.api.handle(method, urlsplit(self.path).path, body)
                finally:
                    server._leave()
                self._reply(response)

        def _hold(self, size: int) -> bool:
            """Hold `size` bytes of the in-flight budget for what has arrived; False after
            answering 429."""
            assert self._account is not None
            try:
                self._account.hold_at_least(size)
            except ServingError as exc:
                self._refuse(exc.http_status, exc.message)
                return False
            return True

        def _read_body(self) -> bytes | None:
            """The request body, or None after answering 4xx (and dropping the connection).

            Budget is held for the bytes that have arrived, never for bytes only declared, and
            the whole body must arrive within the body deadline."""
            limit = server.max_request_bytes
            self._reader.body_started(limits.body_timeout_seconds)
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked(limit)
            values = {v.strip() for v in self.headers.get_all("Content-Length", [])}
            if len(values) > 1:  # conflicting lengths: the framing is ambiguous (smuggling)
                return self._refuse(400, "Conflicting Content-Length headers")
            text = values.pop() if values else "0"
            if not _CONTENT_LENGTH.fullmatch(text):
                return self._refuse(400, f"Invalid Content-Length header: {text!r}")
            length = int(text)
            if length > limit:
                return self._refuse(
                    413,
                    f"Request body of {length} bytes exceeds the server's limit of {limit} "
                    "bytes (--max_request_bytes)",
                )
            free = server.budget.capacity - server.budget.used
            if length > free:  # it could not be held once here: refuse before reading it
                return self._refuse(
                    429,
                    f"Request body of {length} bytes would exceed the {server.budget.capacity} "
                    f"bytes this server accepts in flight at once ({free} free; "
                    "--max_inflight_request_bytes); retry later",
                )
            body = bytearray()
            while len(body) < length:
                chunk = self.rfile.read1(min(length - len(body), _READ_CHUNK))
                if not chunk:
                    self.close_connection = True
                    return None  # the client went away mid-body; nobody to answer
                body += chunk
                if not self._hold(len(body)):
                    return None
            return bytes(body)

        def _read_chunked(self, limit: int) -> bytes | None:
            body = bytearray()  # one buffer: a list of 1-byte chunks costs ~40x their bytes
            while True:
                line = self.rfile.readline(1024).split(b";")[0].strip()
                if not re.fullmatch(rb"[0-9a-fA-F]{1,16}", line):
                    return self._refuse(400, "Malformed chunked request body")
                size = int(line, 16)
                if size == 0:
                    while self.rfile.readline(1024).strip():
                        pass  # trailers
                    return bytes(body)
                if len(body) + size > limit:
                    return self._refuse(
                        413, f"Request body exceeds the server's limit of {limit} bytes"
                    )
                while size:
                    chunk = self.rfile.read1(min(size, _READ_CHUNK))
                    if not chunk:
                        self.close_connection = True
                        return None
                    body += chunk
                    size -= len(chunk)
                    if not self._hold(len(body)):
                        return None
                self.rfile.readline(8)

        def _refuse(self, status: int, message: str) -> None:
            self.close_connection = True  # the unread body makes the stream unusable
            self._reply(Response(status, JSON, json_parse.error_json(message)), close=True)
            return None

        def _reply(self, response: Response, close: bool = False) -> None:
            # http.server answers HTTP/0.9 (and lines it cannot parse) with a bare body; every
            # client of this API speaks HTTP/1.x, and a status line tells them what went wrong.
            if self.request_version == "HTTP/0.9":
                self.request_version = "HTTP/1.0"
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            if close or server._stopping:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(response.body)

    return Handler
