"""An HTTP server that keeps one checkpoint loaded and answers predictions (standard library only).

Routes: ``POST /predict`` (a JSON array of rows, ``{"rows": [...]}``, or JSON lines, as ``predict``
reads stdin: each row a list of values or an object keyed by feature name; text models take strings;
query ``proba=1`` and ``top_k=K``), ``GET /health`` and ``GET /metadata``. Answers are JSON; a user
mistake is a 4xx with ``{"error": <the message nnctl predict prints>}`` and the server stays up.
Requests are read on their own threads (``ThreadingHTTPServer``); the model runs one request at a
time under a lock, so concurrent requests are serialised, not interleaved. SIGTERM (and SIGINT) stop
accepting, finish the requests in flight and return.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np

from nnctl import __version__
from nnctl.data.readers import decode_text
from nnctl.data.text import read_text_inputs
from nnctl.errors import DataError, NnctlError, OutputError, SpecError, quote
from nnctl.inference import predict, restore
from nnctl.multi_spec import refuse_named

MAX_BODY = 10 * 2**20
READ_TIMEOUT_S = 30  # a client that stops sending mid-request frees its thread after this


class ModelService:
    """The loaded model and what a request needs from it: ``predict(body, query)`` -> JSON-ready dict.

    ``render(outputs, decoded, prep, proba, top_k)`` turns predictions into JSON-lines text, the
    rows ``nnctl predict --format jsonl`` prints (given by the caller, so both stay one code path)."""

    def __init__(self, checkpoint: str, render, device: str = "auto"):
        self.checkpoint = str(checkpoint)
        self.restored = restore(checkpoint, device)

        refuse_named(self.restored.spec, "serve", str(checkpoint))
        self._predict, self.render = predict, render
        self.lock = threading.Lock()
        self.metadata = _metadata(self.checkpoint, self.restored)

    def predict(self, body: bytes, query: dict[str, list[str]]) -> dict:
        proba, top_k = _flag(query, "proba"), _top_k(query)
        _, model, prep, spec = self.restored
        if prep.task == "regression" and (proba or top_k is not None):
            flag = "--proba" if proba else "--top-k"
            raise SpecError(
                f"{flag}: {self.checkpoint} is a regression model (loss {spec.train.loss.plain()!r}); "
                f"it predicts values, not class probabilities"
            )
        x = parse_rows(body, prep)
        with self.lock:  # one model call at a time: layers reuse buffers between calls
            outputs, decoded = self._predict(self.restored, x, source="request")
        text = self.render(outputs, decoded, prep, proba, top_k)
        return {"predictions": [json.loads(line) for line in text.splitlines() if line]}


def _flag(query, key) -> bool:
    value = (query.get(key) or ["0"])[-1].lower()
    if value not in ("0", "1", "true", "false", ""):
        raise SpecError(f"{key}: expected 1 or 0, found {quote(value)}")
    return value in ("1", "true", "")


def _top_k(query) -> int | None:
    if "top_k" not in query:
        return None
    value = query["top_k"][-1]
    if not value.isdigit() or int(value) < 1:
        raise SpecError(f"--top-k: expected a positive integer, found {quote(value)}")
    return int(value)


def parse_rows(body: bytes, prep) -> np.ndarray:
    """Rows of a request body as the raw (unscaled) array predict takes: numbers, objects by feature name,
    or strings for a text model."""
    text = decode_text(body, "request")
    stripped = text.strip()
    if not stripped:
        raise DataError("request: empty body; send a JSON array of rows")
    try:
        if stripped[0] == "[" or (stripped[0] == "{" and "\n" not in stripped):
            doc = json.loads(stripped)
            rows = doc.get("rows") if isinstance(doc, dict) and "rows" in doc else doc
            rows = rows if isinstance(rows, list) and (not rows or isinstance(rows[0], (list, dict, str))) else [rows]
        else:  # JSON lines
            rows = [json.loads(line) for line in stripped.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise DataError(f"request: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not rows:
        raise DataError("request: no rows")
    if prep.kind == "text":
        if not all(isinstance(r, str) for r in rows):
            raise DataError("request: a text model takes rows that are strings")

        return read_text_inputs("\n".join(r.replace("\n", " ") for r in rows).encode(), "request", prep)
    features = prep.feature_names
    values = []
    for i, row in enumerate(rows, start=1):
        if isinstance(row, dict):
            missing = [f for f in features if f not in row]
            if not features or missing:
                want = ", ".join(map(str, features[:10])) if features else "none (send lists of values)"
                raise DataError(
                    f"request: row {i}: missing feature {quote(missing[0] if missing else '?')}; expected keys {want}"
                )
            row = [row[f] for f in features]
        elif not isinstance(row, list):
            raise DataError(f"request: row {i}: expected a JSON object or list, found {quote(json.dumps(row))}")
        elif features and len(row) != len(features):  # as predict's JSON lines: never broadcast one value
            names = ", ".join(map(str, features[:10])) + (
                f", ... ({len(features)} in all)" if len(features) > 10 else ""
            )
            raise DataError(
                f"request: row {i}: {len(row)} values, the model expects {len(features)} features ({names})"
            )
        values.append(row)
    try:
        arr = np.array(values, dtype=np.float64)
    except (ValueError, TypeError):
        raise DataError("request: expected rows of numbers, all of one shape") from None
    if arr.ndim < 2 or not np.isfinite(arr).all():
        raise DataError("request: expected rows of finite numbers")
    return arr


def _metadata(checkpoint: str, restored) -> dict:
    _, model, prep, spec = restored
    classes = None if prep.classes is None else [c.item() if hasattr(c, "item") else c for c in prep.classes]
    return {
        "checkpoint": checkpoint,
        "spec": spec.name,
        "nnctl_version": __version__,
        "inputs": {"shape": list(model.input_shape), "kind": prep.kind, "features": list(prep.feature_names)},
        "outputs": {
            "shape": list(model.output_shape) if not isinstance(model.output_shape, list) else None,
            "task": prep.task,
            "targets": list(prep.target_names),
        },
        "classes": classes,
        "preprocessing": {
            "rescale": prep.rescale,
            "normalize": prep.normalize,
            "normalize_target": prep.normalize_target,
        },
    }


class _Handler(BaseHTTPRequestHandler):
    server_version = f"nnctl/{__version__}"
    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT_S

    def _send(self, status: int, payload: dict) -> None:
        body = (json.dumps(payload) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message, "status": status})

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/health":
            self._send(200, {"status": "ok"})
        elif path == "/metadata":
            self._send(200, self.server.service.metadata)
        elif path == "/predict":
            self._error(405, "/predict: use POST with a JSON body")
        else:
            self._error(404, f"{quote(path)}: no such route; use POST /predict, GET /health or GET /metadata")

    def do_POST(self):
        url = urlsplit(self.path)
        if url.path != "/predict":
            self._error(
                404 if url.path not in ("/health", "/metadata") else 405,
                f"{quote(url.path)}: use POST /predict, GET /health or GET /metadata",
            )
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._error(411, "request: a Content-Length header is required")
            return
        limit = self.server.max_body
        if int(length) > limit:  # refused before reading: the body never reaches memory
            self._error(413, f"request: body of {int(length)} bytes is larger than the limit of {limit} bytes")
            return
        body = self.rfile.read(int(length))
        try:
            result = self.server.service.predict(body, parse_qs(url.query, keep_blank_values=True))
        except NnctlError as exc:
            self._error(422 if isinstance(exc, DataError) else 400, " ".join(str(exc).split()))
            return
        except Exception as exc:  # noqa: BLE001 - a bug must not take the server down; the client hears of it
            self._error(500, f"internal error ({type(exc).__name__}: {quote(exc, 80)}), please report")
            return
        self._send(200, result)

    def log_message(self, format, *args):
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never holds shutdown
    block_on_close = False


def make_server(service: ModelService, host: str, port: int, max_body: int = MAX_BODY) -> Server:
    try:
        server = Server((host, port), _Handler)
    except OSError as exc:
        raise OutputError(f"{host}:{port}: cannot listen ({exc.strerror or exc})") from None
    server.service, server.max_body = service, max_body
    return server


def serve(
    checkpoint: str, host: str, port: int, render, max_body: int = MAX_BODY, device: str = "auto", ready=None
) -> None:
    """Serve until SIGTERM or SIGINT; ``ready(address)`` is called once the socket listens."""
    if max_body < 1:
        raise SpecError(f"--max-body: expected a positive number of bytes, found {max_body}")
    if not 0 <= port <= 65535:
        raise SpecError(f"--port: expected 0 to 65535, found {port}")
    service = ModelService(checkpoint, render, device)
    server = make_server(service, host, port, max_body)

    def stop(signum, frame):  # shutdown() waits for serve_forever, so it must run on another thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if ready is not None:
            ready(server.server_address)
        server.serve_forever(poll_interval=0.2)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        server.server_close()
