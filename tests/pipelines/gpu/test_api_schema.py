"""The monitoring API's OpenAPI document tells the truth.

schemathesis (all its checks; the coverage, fuzzing and stateful phases, the stateful one
following the document's links from ``GET /runs`` to the run ids it lists) runs against a real
server on loopback over real reports and finds no disagreement; and the document states the
bounds the server enforces. The server is the real one: only its benchmark sizes are capped low
(``create_app(max_sizes=...)``, which the document then states), so every benchmark it runs is
a real one that takes milliseconds.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from alphapulse.pipelines.gpu import bench as gpu_bench
from alphapulse.pipelines.gpu import RUN_ID_MAX_LENGTH, RUN_ID_PATTERN, create_app
from tests.pipelines.gpu.test_api import build_reports, serving

CAPS = {"indicators": 12_600, "covariance": 100, "backtest": 32, "montecarlo": 10_000}
MAX_REPEATS = 2
EXAMPLES = 50  # per operation and phase: about 10 s on two cores
SEED = 20261205


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, answers): the API over real reports under a real server, and the
    (method, path, status) of every request it answered."""
    roots = build_reports(tmp_path_factory.mktemp("schema"))
    app = create_app(list(roots), max_sizes=CAPS, max_repeats=MAX_REPEATS, sample_interval_s=0.05, history=20)
    answers = []

    async def noting(scope, receive, send):  # the app answers; this only notes what it answered
        async def noted(message):
            if message["type"] == "http.response.start":
                answers.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await app(scope, receive, noted if scope["type"] == "http" else send)

    with serving(noting) as url:
        yield url, answers


def _component(doc: dict, ref: str) -> dict:
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]


@pytest.mark.parametrize("caps", [None, CAPS])
def test_the_document_states_each_operations_bounds(caps):
    doc = create_app([], max_sizes=caps, max_repeats=MAX_REPEATS if caps else 10).openapi()
    body = doc["paths"]["/gpu/benchmark"]["post"]["requestBody"]
    assert body["required"] is True
    union = body["content"]["application/json"]["schema"]
    assert union["discriminator"]["propertyName"] == "operation"
    models = [_component(doc, ref["$ref"]) for ref in union["oneOf"]]
    assert [m["properties"]["operation"]["const"] for m in models] == list(gpu_bench.OPERATIONS)
    for op, model in zip(gpu_bench.OPERATIONS, models):
        assert model["additionalProperties"] is False and model["required"] == ["operation"]
        integer, null = model["properties"]["size"]["anyOf"]
        hi = (caps or gpu_bench.MAX_SIZE)[op]
        assert integer == {"type": "integer", "minimum": gpu_bench.MIN_SIZE[op], "maximum": hi} and null == {
            "type": "null"}
        repeats = model["properties"]["repeats"]
        assert (repeats["type"], repeats["minimum"], repeats["maximum"]) == ("integer", 1, MAX_REPEATS if caps else 10)
        assert model["properties"]["dtype"]["enum"] == ["float64", "float32"]
    samples = doc["paths"]["/gpu/utilization"]["get"]["parameters"][0]["schema"]
    assert (samples["type"], samples["minimum"], samples["maximum"]) == ("integer", 0, 720)
    for path in ("/runs/{run_id}", "/runs/{run_id}/summary.html"):
        run_id = doc["paths"][path]["get"]["parameters"][0]["schema"]
        assert run_id["pattern"] == RUN_ID_PATTERN and run_id["maxLength"] == RUN_ID_MAX_LENGTH


def test_the_document_lists_every_answer_with_its_type():
    """Every error is a Problem in JSON (the page's 404 too), the connection limit's 503 plain
    text; FastAPI's own 422 body appears nowhere, and no 422 where nothing is validated."""
    doc = create_app([]).openapi()
    assert doc["components"]["schemas"]["Problem"]["required"] == ["detail"]
    assert "HTTPValidationError" not in json.dumps(doc)
    expected = {("/gpu/status", "get"): {"200", "408", "413", "503"},
                ("/gpu/utilization", "get"): {"200", "408", "413", "422", "503"},
                ("/gpu/benchmark", "post"): {"200", "408", "409", "413", "422", "503"},
                ("/runs", "get"): {"200", "408", "413", "503"},
                ("/runs/{run_id}", "get"): {"200", "400", "404", "408", "413", "503"},
                ("/runs/{run_id}/summary.html", "get"): {"200", "400", "404", "408", "413", "503"}}
    assert {(p, m) for p, item in doc["paths"].items() for m in item} == set(expected)
    for (path, method), statuses in expected.items():
        responses = doc["paths"][path][method]["responses"]
        assert set(responses) == statuses, path
        for status, answer in responses.items():
            if status == "503":
                assert list(answer["content"]) == ["text/plain"]
            elif int(status) >= 400:
                assert answer["content"] == {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert list(doc["paths"]["/runs/{run_id}/summary.html"]["get"]["responses"]["200"]["content"]) == ["text/html"]


def test_the_document_links_the_runs_to_their_details():
    doc = create_app([]).openapi()
    links = doc["paths"]["/runs"]["get"]["responses"]["200"]["links"]
    assert {(v["operationId"], v["parameters"]["run_id"]) for v in links.values()} == {
        ("run_detail", "$response.body#/0/id"), ("run_page", "$response.body#/0/id")}
    page = doc["paths"]["/runs/{run_id}"]["get"]["responses"]["200"]["links"]["page"]
    assert (page["operationId"], page["parameters"]["run_id"]) == ("run_page", "$response.body#/id")
    ids = {op["operationId"] for item in doc["paths"].values() for op in item.values()}
    assert {"run_detail", "run_page"} <= ids


def test_schemathesis_finds_no_disagreement(served, tmp_path):
    url, answers = served
    report = tmp_path / "schemathesis.json"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # loopback only, never a proxy
    proc = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json", "--checks", "all",
         "--max-examples", str(EXAMPLES), "--seed", str(SEED), "--workers", "1", "--generation-database", "none",
         "--phases", "examples,coverage,fuzzing,stateful", "--request-timeout", "60", "--no-color",
         "--suppress-health-check", "too_slow",  # a busy CI machine is slow, not wrong
         "--report", "json", "--report-json-path", str(report)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    result = json.loads(report.read_text())
    assert result["exit_code"] == 0 and result["failures"] == [] and result["errors"] == []
    assert result["operations"]["tested"] == 6
    assert {p: result["phases"][p]["status"] for p in ("coverage", "fuzzing", "stateful")} == dict.fromkeys(
        ("coverage", "fuzzing", "stateful"), "success")

    # the stateful phase followed the links to a real run id; real benchmarks ran
    newest = httpx.get(f"{url}/runs", timeout=10).json()[0]["id"]
    assert ("GET", f"/runs/{newest}", 200) in answers and ("GET", f"/runs/{newest}/summary.html", 200) in answers
    assert any(a[:2] == ("POST", "/gpu/benchmark") and a[2] == 200 for a in answers)
    assert not [a for a in answers if a[2] >= 500]
