"""``nnctl serve``: a real server in a subprocess on a free loopback port, compared with ``nnctl predict``."""

import http.client
import json
import selectors
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from helpers import ROOT, train_spec

TEST_CSV = ROOT / "examples/data/iris-test.csv"
STARTUP_LIMIT_S = 60  # a bound so a broken server fails the test instead of hanging it (not a timed assertion)


def _cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "nnctl", *args], capture_output=True, text=True, input=stdin)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    _, done = train_spec("iris_mlp.toml", tmp_path_factory.mktemp("serve"), "train.epochs=2")
    return done["checkpoint"]


class Server:
    def __init__(self, checkpoint, *extra):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nnctl", "serve", checkpoint, "--port", "0", *extra],
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = self._wait_for_address()

    def _wait_for_address(self) -> int:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while time.monotonic() < deadline:
            if sel.select(timeout=1.0):
                line = self.proc.stderr.readline()
                if line.startswith("serving "):
                    return int(line.split("http://127.0.0.1:")[1].split()[0])
                if not line:
                    break
        self.proc.kill()
        raise AssertionError(f"the server did not start: {self.proc.stderr.read()}")

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return self.proc.returncode, err


@pytest.fixture(scope="module")
def server(checkpoint):
    s = Server(checkpoint, "--max-body", "4096")
    yield s
    if s.proc.poll() is None:
        s.proc.kill()


def _rows():
    lines = TEST_CSV.read_text().splitlines()
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:] if line]
    features = [h for h in header if h != "species"]
    return [{f: float(r[header.index(f)]) for f in features} for r in rows]


def _predict_jsonl(checkpoint, *flags):
    r = _cli("predict", checkpoint, str(TEST_CSV), "--format", "jsonl", *flags)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def _same(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(b[k], float):  # the batch differs from predict's, so the last bits of a product may
                np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7)
            else:
                assert a[k] == b[k], k


def test_health_and_metadata(server, checkpoint):
    assert server.request("GET", "/health") == (200, {"status": "ok"})
    status, meta = server.request("GET", "/metadata")
    assert status == 200
    assert meta["classes"] == ["setosa", "versicolor", "virginica"]
    assert meta["inputs"]["features"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert meta["inputs"]["shape"] == [4] and meta["outputs"]["shape"] == [3]
    assert meta["spec"] == "iris-mlp" and meta["preprocessing"]["normalize"] == "standard"
    from nnctl import __version__

    assert meta["nnctl_version"] == __version__


def test_concurrent_requests_match_predict(server, checkpoint):
    rows = _rows()
    want = _predict_jsonl(checkpoint, "--proba", "--top-k", "2")
    chunks = [(i, min(i + 5, len(rows))) for i in range(0, len(rows), 5)]
    results, errors = {}, []

    def worker(a, b, as_lists):
        body = [list(r.values()) for r in rows[a:b]] if as_lists else rows[a:b]
        try:
            results[a] = server.request(
                "POST", "/predict?proba=1&top_k=2", json.dumps(body).encode(), {"Content-Type": "application/json"}
            )
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(a, b, i % 2 == 0)) for i, (a, b) in enumerate(chunks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(results) == len(chunks)
    got = []
    for a, _ in chunks:
        status, payload = results[a]
        assert status == 200, payload
        got += payload["predictions"]
    _same(got, want)


def test_json_lines_and_labels_only(server, checkpoint):
    rows = _rows()[:6]
    body = "\n".join(json.dumps(r) for r in rows).encode()
    status, payload = server.request("POST", "/predict", body)
    assert status == 200
    _same(payload["predictions"], _predict_jsonl(checkpoint)[:6])


@pytest.mark.parametrize(
    "body,status,fragment",
    [
        (b"[[1, 2", 422, "not valid JSON"),
        (b"[[1.0, 2.0]]", 422, "2 values, the model expects 4 features"),
        (b"[[[1.0, 2.0, 3.0, 4.0]]]", 422, "row 1: 1 values, the model expects 4 features"),
        (b'[{"sepal_length": 1}]', 422, "missing feature 'sepal_width'"),
        (b'[["a", "b", "c", "d"]]', 422, "rows of numbers"),
        (b"", 422, "empty body"),
        (b"\xff\xfe[", 422, ""),
    ],
)
def test_bad_bodies_are_4xx_and_the_server_stays_up(server, body, status, fragment):
    got, payload = server.request("POST", "/predict", body)
    assert got == status and fragment in payload["error"]
    assert server.request("GET", "/health")[0] == 200


def test_wrong_shape_message_is_the_cli_message(server, checkpoint):
    _, payload = server.request("POST", "/predict", b"[[1.0, 2.0]]")
    cli = _cli("predict", checkpoint, "-", stdin="[1.0, 2.0]\n")
    assert cli.returncode == 2
    # the CLI names stdin and the line, the server the request and the row; the message itself is the same
    cli_msg = cli.stderr.strip().removeprefix("error: stdin: line 1: ")
    assert payload["error"] == "request: row 1: " + cli_msg
    assert "2 values, the model expects 4 features" in cli_msg


def test_oversized_body_is_refused_unread(server):
    big = json.dumps([[1.0, 2.0, 3.0, 4.0]] * 1000).encode()
    status, payload = server.request("POST", "/predict", big)
    assert status == 413 and "4096" in payload["error"]
    assert server.request("GET", "/health")[0] == 200


def test_query_routes_and_methods(server):
    body = json.dumps([[5.1, 3.5, 1.4, 0.2]]).encode()
    status, payload = server.request("POST", "/predict?top_k=0", body)
    assert status == 400 and "--top-k" in payload["error"]
    status, payload = server.request("POST", "/predict?top_k=9", body)
    assert status == 400 and "at most 3" in payload["error"]
    status, payload = server.request("POST", "/predict?proba=maybe", body)
    assert status == 400 and "proba" in payload["error"]
    assert server.request("GET", "/nothing")[0] == 404
    assert server.request("GET", "/predict")[0] == 405
    assert server.request("POST", "/health", b"{}")[0] == 405


def test_sigterm_stops_cleanly(checkpoint):
    s = Server(checkpoint)
    assert s.request("GET", "/health")[0] == 200
    code, err = s.stop()
    assert code == 0 and "stopped" in err and "Traceback" not in err


def test_bad_options_exit_2(checkpoint):
    r = _cli("serve", checkpoint, "--port", "70000")
    assert r.returncode == 2 and r.stderr.startswith("error: --port")
    r = _cli("serve", "missing.h5", "--port", "0")
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_text_model_takes_strings(tmp_path):
    """A text model's rows are strings, tokenised as predict tokenises stdin lines."""
    from nnctl import run
    from nnctl.cli.predict import render
    from nnctl.data.text import read_text_inputs
    from nnctl.serve import ModelService

    _, done = train_spec("text_gru.toml", tmp_path, "train.epochs=1")
    service = ModelService(done["checkpoint"], lambda o, d, p, proba, k: render(o, d, p, "jsonl", proba, k), "cpu")
    texts = ["a wonderful, moving film", "dull and far too long", "fine"]
    got = service.predict(json.dumps(texts).encode(), {"proba": ["1"]})["predictions"]
    restored = run.restore(done["checkpoint"], "cpu")
    x = read_text_inputs("\n".join(texts).encode(), "stdin", restored[2])
    outputs, decoded = run.predict(restored, x)
    want = [json.loads(line) for line in render(outputs, decoded, restored[2], "jsonl", True).splitlines()]
    _same(got, want)
    with pytest.raises(Exception, match="strings"):
        service.predict(b"[[1, 2, 3]]", {})
