"""The monitoring API against a real uvicorn server on loopback: good and bad requests."""
from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import uvicorn

from alphapulse.flows.cli.dispatch import main
from alphapulse.flows.cli.serve import is_loopback
from alphapulse.pipelines.gpu import bench as gpu_bench
from alphapulse.pipelines.gpu import MAX_BODY_BYTES, create_app, server_options
from alphapulse.pipelines.config import load_config
from alphapulse.pipelines.daily.pipeline import prepare_daily, run_daily
from alphapulse.pipelines.gpu.status import gpu_status
from alphapulse.pipelines.report.write import write_report
from tests.pipelines.conftest import ROOT, SAMPLE


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def build_reports(base):
    """Two roots under ``base``: a real daily report on the sample and a second folder of the
    same name, one report with alerts, one folder with a broken manifest, one hidden, a secret
    outside, and links towards the secret (a linked folder, a linked page, a linked manifest)."""
    a, b = base / "reports", base / "more"
    run_daily(prepare_daily(load_config(), data_path=str(SAMPLE), out_dir=str(a / "daily"), backend="cpu"))
    manifest = {"run_id": "abc", "created_at": "2030-01-01T00:00:00+00:00", "pipeline": "backtest",
                "backend": {"name": "cpu", "reason": "asked"}, "stages": {"load": 0.1},
                "alerts": [{"kind": "gpu_oom", "stage": "sweep", "message": "out of memory", "batch_size": 8,
                            "action": "halved"}]}
    write_report(a / "bt", tables={}, manifest=manifest, summary="# bt\n")
    write_report(b / "daily", tables={}, manifest={**manifest, "alerts": [], "created_at": "2020-01-01"}, summary="")
    (a / "broken").mkdir()
    (a / "broken" / "manifest.json").write_text("{not json")
    (a / ".hidden").mkdir()
    (a / ".hidden" / "manifest.json").write_text("{}")
    secret = base / "secret"
    secret.mkdir()
    (secret / "manifest.json").write_text(json.dumps({"pipeline": "SECRET"}))
    (secret / "summary.html").write_text("SECRET")
    (a / "linked").symlink_to(secret, target_is_directory=True)
    write_report(a / "page_link", tables={}, manifest={**manifest, "alerts": []}, summary="")
    (a / "page_link" / "summary.html").unlink()
    (a / "page_link" / "summary.html").symlink_to(secret / "summary.html")
    (a / "manifest_link").mkdir()
    (a / "manifest_link" / "manifest.json").symlink_to(secret / "manifest.json")
    return a, b


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return build_reports(tmp_path_factory.mktemp("api"))


@contextlib.contextmanager
def serving(app, **options):
    """The base URL of ``app`` under a real uvicorn server (configured as ``alphapulse serve``
    does, with ``options`` for server_options) in a thread, on a free loopback port."""
    sock = _free_socket()
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **server_options(**options)))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def server(roots):
    """(base URL, app): the app under a real uvicorn server in a thread, on a free loopback port."""
    app = create_app(list(roots), sample_interval_s=0.05, history=50)
    with serving(app) as url:
        yield url, app


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server[0], timeout=60) as c:
        yield c


def test_openapi_lists_every_endpoint(client):
    schema = client.get("/openapi.json").json()
    assert {"/gpu/status", "/gpu/utilization", "/gpu/benchmark", "/runs", "/runs/{run_id}",
            "/runs/{run_id}/summary.html"} <= set(schema["paths"])
    body = schema["paths"]["/gpu/benchmark"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    models = [schema["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]] for ref in body["oneOf"]]
    assert [m["properties"]["operation"]["const"] for m in models] == list(gpu_bench.OPERATIONS)
    assert client.get("/docs").status_code == 200


def test_gpu_status_matches_the_library(client):
    r = client.get("/gpu/status")
    assert r.status_code == 200
    got, direct = r.json(), gpu_status()
    assert got["available"] == direct["available"]
    assert [d["name"] for d in got["devices"]] == [d["name"] for d in direct["devices"]]
    if not got["available"]:
        assert got["reason"]  # says why, e.g. no NVIDIA driver


def test_utilization_snapshot_and_recent_samples(client):
    time.sleep(0.3)  # the server samples every 0.05 s
    r = client.get("/gpu/utilization", params={"samples": 5})
    assert r.status_code == 200
    u = r.json()
    assert u["process"]["rss_bytes"] > 10 * 2**20  # a Python process with pandas loaded
    assert 1 <= len(u["samples"]) <= 5 and all(s["process"]["rss_bytes"] > 0 for s in u["samples"])
    assert [s["timestamp"] for s in u["samples"]] == sorted(s["timestamp"] for s in u["samples"])
    assert client.get("/gpu/utilization").json()["samples"] is None
    assert client.get("/gpu/utilization", params={"samples": -1}).status_code == 422


def test_benchmark_answers_times_and_speedup(client):
    r = client.post("/gpu/benchmark", json={"operation": "covariance", "size": 30, "repeats": 1})
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["operation"] == "covariance" and b["size"] == 30 and b["unit"] == "assets" and b["repeats"] == 1
    assert b["cpu_time"] > 0 and b["cpu_check"] is True
    if gpu_status()["available"]:
        assert b["gpu_time"] > 0 and b["speedup"] == pytest.approx(b["cpu_time"] / b["gpu_time"]) and b["agree"]
    else:
        assert b["gpu_time"] is None and b["speedup"] is None and b["agree"] is None
        assert b["device"] == "cpu" and b["gpu_reason"]
    default = client.post("/gpu/benchmark", json={"operation": "covariance", "repeats": 1}).json()
    assert default["size"] == min(gpu_bench.default_sizes("covariance"))


@pytest.mark.parametrize("body, needle", [
    ({"operation": "fft"}, "operation"),
    ({"operation": "covariance", "size": gpu_bench.MAX_SIZE["covariance"] + 1}, "out of bounds"),
    ({"operation": "covariance", "size": 0}, "out of bounds"),
    ({"operation": "covariance", "size": "big"}, "size"),
    ({"operation": "covariance", "size": 20, "repeats": 1000}, "repeats"),
    ({"operation": "covariance", "dtype": "float16"}, "dtype"),
    ({"operation": "covariance", "shell": "rm -rf /"}, "shell"),
    ({}, "operation"),
])
def test_benchmark_rejects_bad_bodies_with_422(client, body, needle):
    r = client.post("/gpu/benchmark", json=body)
    assert r.status_code == 422, r.text
    assert needle in r.text


def test_benchmark_rejects_malformed_json(client):
    r = client.post("/gpu/benchmark", content=b'{"operation": "covariance",',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and "json" in r.text.lower()


@pytest.mark.parametrize("raw, field", [
    (b'{"operation": "covariance", "size": 1e400}', "size"),
    (b'{"operation": "covariance", "size": -1e400}', "size"),
    (b'{"operation": "covariance", "size": NaN}', "size"),
    (b'{"operation": "covariance", "size": Infinity}', "size"),
    (b'{"operation": "covariance", "size": 20, "repeats": 1e400}', "repeats"),
    (b'{"operation": "covariance", "size": 20, "repeats": NaN}', "repeats"),
    (b'{"operation": "covariance", "dtype": NaN}', "dtype"),
    (b'{"operation": "covariance", "extra": -Infinity}', "extra"),
])
def test_benchmark_refuses_numbers_json_cannot_carry_with_422(client, raw, field):
    """NaN and infinities (1e400 parses to one) are 422 naming the field, never a 500."""
    r = client.post("/gpu/benchmark", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and detail.startswith(f"{field}: "), detail
    if field in ("size", "repeats"):
        assert "not a number JSON can carry" in detail and "expected an integer from" in detail


@pytest.mark.parametrize("raw, why", [
    (b'7\xff', "utf-8"),                                                    # not UTF-8
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),                        # RecursionError in json.loads
    (b'{"operation": "covariance", "size": 1' + b"0" * 5000 + b"}", "digits"),  # beyond Python's int parsing
])
def test_benchmark_refuses_bodies_json_cannot_read_with_422(client, raw, why):
    """What FastAPI answers with a bare 400 (not in the schema) is 422 saying why."""
    r = client.post("/gpu/benchmark", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("request body is not valid JSON") and why in r.json()["detail"]


def test_benchmark_accepts_integral_floats_and_refuses_strings(client):
    """JSON Schema's integers include 20.0; a string "20" is not one (pydantic alone would take it)."""
    ok = client.post("/gpu/benchmark", json={"operation": "covariance", "size": 20.0, "repeats": 1.0})
    assert ok.status_code == 200 and ok.json()["size"] == 20, ok.text
    for bad in ({"size": "20"}, {"size": True}, {"size": 20.5}, {"repeats": "1"}):
        r = client.post("/gpu/benchmark", json={"operation": "covariance", "size": 20, **bad})
        assert r.status_code == 422 and "is not an integer" in r.json()["detail"], (bad, r.text)


@pytest.mark.parametrize("operation", gpu_bench.OPERATIONS)
def test_benchmark_accepts_each_operations_smallest_size(client, operation):
    """The bounds are per operation (backtest from 2, indicators from 2,520 cells): the smallest
    of each runs, and one below it is 422 naming the operation's bounds."""
    lo = gpu_bench.MIN_SIZE[operation]
    r = client.post("/gpu/benchmark", json={"operation": operation, "size": lo, "repeats": 1})
    assert r.status_code == 200 and r.json()["size"] == lo, r.text
    r = client.post("/gpu/benchmark", json={"operation": operation, "size": lo - 1, "repeats": 1})
    assert r.status_code == 422 and f"from {lo:,} to {gpu_bench.MAX_SIZE[operation]:,}" in r.json()["detail"]


def test_oversized_bodies_get_413(client):
    big = json.dumps({"operation": "covariance", "pad": "x" * MAX_BODY_BYTES}).encode()
    r = client.post("/gpu/benchmark", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]

    def chunks():  # no Content-Length: streamed in pieces, counted as they arrive
        for _ in range(20):
            yield b"x" * 8192

    r = client.post("/gpu/benchmark", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_second_benchmark_while_one_runs_gets_409(server, client):
    _, app = server
    assert app.state.benchmark_lock.acquire(timeout=30)  # a benchmark "running" (the lock it holds)
    try:
        r = client.post("/gpu/benchmark", json={"operation": "covariance", "size": 20, "repeats": 1})
        assert r.status_code == 409 and "already running" in r.json()["detail"]
    finally:
        app.state.benchmark_lock.release()
    assert client.post("/gpu/benchmark", json={"operation": "covariance", "size": 20, "repeats": 1}).status_code == 200


def test_concurrent_real_benchmarks_one_wins_one_gets_409(server, client):
    """Two real requests at once: the slow one runs, the other is refused while it does."""
    _, app = server
    slow = {}

    def run_slow():
        with httpx.Client(base_url=server[0], timeout=120) as c:
            slow["r"] = c.post("/gpu/benchmark", json={"operation": "montecarlo", "size": 400_000, "repeats": 1})

    t = threading.Thread(target=run_slow)
    t.start()
    deadline = time.monotonic() + 30
    while app.state.benchmark_running is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    r = client.post("/gpu/benchmark", json={"operation": "covariance", "size": 20, "repeats": 1})
    t.join()
    assert r.status_code == 409 and "montecarlo size 400000" in r.json()["detail"]
    assert slow["r"].status_code == 200 and slow["r"].json()["wall_s"] > 0


def test_runs_lists_report_folders_of_every_root(client, roots):
    runs = client.get("/runs").json()
    by_id = {r["id"]: r for r in runs}
    # hidden folders, linked ones and outside ones are not listed
    assert set(by_id) == {"daily", "bt", "broken", "page_link", "manifest_link", "daily~2"}
    assert by_id["daily"]["pipeline"] == "daily" and by_id["daily"]["backend"] == "cpu"
    assert by_id["daily"]["backend_reason"] and by_id["daily"]["status"] == "ok"
    assert by_id["daily"]["path"] == str(roots[0] / "daily")
    assert by_id["daily"]["summary_html"] == "/runs/daily/summary.html"
    assert by_id["bt"]["status"] == "alerts" and by_id["bt"]["alerts"] == 1
    assert by_id["broken"]["status"] == "unreadable" and "JSONDecodeError" in by_id["broken"]["error"]
    assert by_id["daily~2"]["path"] == str(roots[1] / "daily")
    assert [r["id"] for r in runs][0] == "bt"  # newest first (2030)


def test_run_detail_has_manifest_and_files(client, roots):
    r = client.get("/runs/daily")
    assert r.status_code == 200
    d = r.json()
    on_disk = json.loads((roots[0] / "daily" / "manifest.json").read_text())
    assert d["manifest"] == on_disk
    names = {f["name"]: f["bytes"] for f in d["files"]}
    assert set(names) == {"indicators.parquet", "rejected.parquet", "manifest.json", "summary.md", "summary.html",
                          "signals.parquet", "breadth.parquet"}
    assert names["indicators.parquet"] == (roots[0] / "daily" / "indicators.parquet").stat().st_size
    page = client.get("/runs/daily/summary.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text.startswith("<!DOCTYPE html>") and "default-src 'none'" in page.headers["content-security-policy"]


def test_links_in_the_reports_are_not_followed(client):
    """A page or a manifest that is a symbolic link (here to a secret outside the root) is not
    read, and a report folder that is a link is not listed: only regular files under the root."""
    by_id = {r["id"]: r for r in client.get("/runs").json()}
    assert "linked" not in by_id
    for path in ("/runs/linked", "/runs/linked/summary.html"):
        r = client.get(path)
        assert r.status_code == 404 and "SECRET" not in r.text
    assert by_id["page_link"]["status"] == "ok" and by_id["page_link"]["summary_html"] is None
    page = client.get("/runs/page_link/summary.html")
    assert page.status_code == 404 and "symbolic link" in page.json()["detail"] and "SECRET" not in page.text
    detail = client.get("/runs/page_link").json()
    assert "summary.html" not in {f["name"] for f in detail["files"]}
    assert by_id["manifest_link"]["status"] == "unreadable" and "symbolic link" in by_id["manifest_link"]["error"]
    r = client.get("/runs/manifest_link")
    assert r.status_code == 200 and r.json()["manifest"] is None and "SECRET" not in r.text


def test_pages_that_are_not_regular_files_are_not_served(tmp_path):
    """A FIFO named summary.html (an open would block the worker) and a folder named so: 404."""
    write_report(tmp_path / "fifo", tables={}, manifest={"run_id": "f"}, summary="")
    (tmp_path / "fifo" / "summary.html").unlink()
    os.mkfifo(tmp_path / "fifo" / "summary.html")
    write_report(tmp_path / "dir", tables={}, manifest={"run_id": "d"}, summary="")
    (tmp_path / "dir" / "summary.html").unlink()
    (tmp_path / "dir" / "summary.html").mkdir()
    with serving(create_app([tmp_path])) as url:
        for rid in ("fifo", "dir"):
            r = httpx.get(f"{url}/runs/{rid}/summary.html", timeout=10)
            assert r.status_code == 404 and "not a regular file" in r.json()["detail"], r.text


@pytest.mark.parametrize("path", ["/runs/nope", "/runs/nope/summary.html", "/runs/broken/summary.html"])
def test_unknown_runs_get_404(client, path):
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("raw", [b"/runs/..", b"/runs/..%2Fsecret", b"/runs/%2E%2E%2Fsecret", b"/runs/..%5Csecret",
                                 b"/runs/.hidden", b"/runs/%2E%2E/summary.html", b"/runs/..%2Fsecret/summary.html",
                                 b"/runs/%2Fetc%2Fpasswd", b"/runs/daily%00"])
def test_path_traversal_never_escapes_the_roots(server, raw):
    """Raw request targets (the client would normalise '..' away): 400 or 404, never the secret."""
    host, port = server[0].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET " + raw + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    assert status in (400, 404), reply[:200]
    assert b"SECRET" not in reply and b"root:" not in reply


def _close_times(socks, started: float, limit_s: float, trickle: bytes) -> dict:
    """socket -> (seconds after ``started`` the server closed it, what it said first), trickling
    ``trickle`` into each open one every 0.1 s (a slow client) until all are closed or ``limit_s``."""
    out = {}
    while len(out) < len(socks) and time.monotonic() - started < limit_s:
        for s in socks:
            if s in out:
                continue
            try:
                s.send(trickle)
                if not select.select([s], [], [], 0)[0]:
                    continue
                said = s.recv(4096)
            except OSError:  # reset: closed without a word
                said = b""
            out[s] = (time.monotonic() - started, said)
        time.sleep(0.1)
    return out


def _read_response(sock) -> bytes:
    """One whole HTTP/1.1 response with a Content-Length, the connection left open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_slow_clients_are_cut_off_and_never_starve_the_others(tmp_path):
    """70 clients trickling their headers (more than the 64 connections uvicorn is allowed):
    other requests are still served at once, and each slow client is answered 408 (or dropped
    for a newer connection) within the header timeout; a trickled body gets 408 too."""
    write_report(tmp_path / "bt", tables={}, manifest={"run_id": "b"}, summary="")
    timeout = 2.0
    with serving(create_app([tmp_path]), header_timeout_s=timeout, body_timeout_s=timeout) as url:
        port = int(url.rsplit(":", 1)[1])
        started = time.monotonic()
        slow = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(70)]
        for s in slow:
            s.sendall(b"GET /runs HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        try:
            for _ in range(3):
                assert httpx.get(f"{url}/runs", timeout=5).status_code == 200
            assert time.monotonic() - started < timeout  # served while the slow ones still hold on
            closed = _close_times(slow, started, limit_s=timeout + 3, trickle=b"x")
        finally:
            for s in slow:
                s.close()
        assert len(closed) == len(slow), f"{len(slow) - len(closed)} slow clients still connected"
        assert max(t for t, _ in closed.values()) < timeout + 1.5
        said = [w for _, w in closed.values()]
        assert all(w == b"" or w.startswith(b"HTTP/1.1 408 ") for w in said)
        assert sum(w.startswith(b"HTTP/1.1 408 ") for w in said) >= len(slow) - 64 // 2
        assert b"request headers not received within 2 s" in next(w for w in said if w)

        # a body trickled after the headers; and a connection kept alive, then a request trickled
        body = socket.create_connection(("127.0.0.1", port), timeout=5)
        body.sendall(b"POST /gpu/benchmark HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{")
        idle = socket.create_connection(("127.0.0.1", port), timeout=5)
        idle.sendall(b"GET /runs HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(idle).startswith(b"HTTP/1.1 200 ")
        idle.sendall(b"GET /runs HTTP/1.1\r\n")
        started = time.monotonic()
        with body, idle:
            closed = _close_times([body, idle], started, limit_s=timeout + 3, trickle=b" ")
        assert closed[body][1].startswith(b"HTTP/1.1 408 ") and b"request body not received" in closed[body][1]
        assert closed[idle][1].startswith(b"HTTP/1.1 408 ") and b"request headers" in closed[idle][1]
        assert max(t for t, _ in closed.values()) < timeout + 1.5
        assert httpx.get(f"{url}/runs", timeout=5).status_code == 200


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True),
                                            ("localhost", True), ("LOCALHOST", True), ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.10", False), ("example.com", False), ("", False)])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_cli_refuses_a_public_host_without_the_flag(capsys):
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--allow-remote" in err and "loopback" in err


def test_cli_serves_the_api(roots):
    """``alphapulse serve`` in its own process, on a free port: /runs and the schema answer."""
    sock = _free_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([sys.executable, "-m", "alphapulse.flows.cli.dispatch", "serve", "--port", str(port),
                             "--reports", str(roots[0]), "--sample-interval", "0", "-q"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/runs", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "alphapulse serve did not start"
                time.sleep(0.1)
        assert r.status_code == 200 and {x["id"] for x in r.json()} == {"daily", "bt", "broken", "page_link",
                                                                        "manifest_link"}
        assert "/gpu/benchmark" in httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()["paths"]
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0].decode()
    assert f"http://127.0.0.1:{port}" in out
