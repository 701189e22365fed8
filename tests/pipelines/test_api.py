"""The monitoring API against a real uvicorn server on loopback: good and bad requests."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import uvicorn

from flows.cli import main
from flows.cli_serve import is_loopback
from pipelines import gpu_bench
from pipelines.api import MAX_BODY_BYTES, create_app
from pipelines.config import load_config
from pipelines.daily import prepare_daily, run_daily
from pipelines.gpu import gpu_status
from pipelines.report import write_report
from tests.pipelines.conftest import ROOT, SAMPLE


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Two roots: a real daily report on the sample and a second folder of the same name, one
    report with alerts, one folder with a broken manifest, one hidden and a secret outside."""
    base = tmp_path_factory.mktemp("api")
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
    return a, b


@pytest.fixture(scope="module")
def server(roots):
    """(base URL, app): the app under a real uvicorn server in a thread, on a free loopback port."""
    app = create_app(list(roots), sample_interval_s=0.05, history=50)
    sock = _free_socket()
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    srv.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server[0], timeout=60) as c:
        yield c


def test_openapi_lists_every_endpoint(client):
    schema = client.get("/openapi.json").json()
    assert {"/gpu/status", "/gpu/utilization", "/gpu/benchmark", "/runs", "/runs/{run_id}",
            "/runs/{run_id}/summary.html"} <= set(schema["paths"])
    assert "post" in schema["paths"]["/gpu/benchmark"]
    body = schema["components"]["schemas"]["BenchmarkRequest"]["properties"]["operation"]
    assert body["enum"] == list(gpu_bench.OPERATIONS)
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
    r = client.post("/gpu/benchmark", content=b'{"operation": "covariance",', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "json" in r.text.lower()


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
    assert set(by_id) == {"daily", "bt", "broken", "daily~2"}  # hidden folders and outside ones not listed
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
    assert set(names) == {"indicators.parquet", "rejected.parquet", "manifest.json", "summary.md", "summary.html"}
    assert names["indicators.parquet"] == (roots[0] / "daily" / "indicators.parquet").stat().st_size
    page = client.get("/runs/daily/summary.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text.startswith("<!DOCTYPE html>") and "default-src 'none'" in page.headers["content-security-policy"]


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
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--port", str(port), "--reports",
                             str(roots[0]), "--sample-interval", "0", "-q"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
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
        assert r.status_code == 200 and {x["id"] for x in r.json()} == {"daily", "bt", "broken"}
        assert "/gpu/benchmark" in httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()["paths"]
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0].decode()
    assert f"http://127.0.0.1:{port}" in out
