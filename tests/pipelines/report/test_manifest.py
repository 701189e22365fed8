"""The typed manifest: every pipeline's real manifest.json is its typed model, a pipeline that
writes a field of the wrong shape fails before writing (naming the field), fields a pipeline adds
are kept, and the HTTP API documents the models."""
from __future__ import annotations

import json

import pytest

import alphapulse as ap
from alphapulse.pipelines.report.manifest import (BacktestManifest, DailyManifest, ManifestError, ModelsManifest,
                                                  PortfolioManifest, check_manifest, parse_manifest)
from tests.pipelines.conftest import SAMPLE, SP500_COLUMNS

MODELS = {"daily": DailyManifest, "backtest": BacktestManifest, "portfolio": PortfolioManifest,
          "models": ModelsManifest}


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    root = tmp_path_factory.mktemp("manifests")
    cfg = ap.load_config(overrides={"data": {"columns": SP500_COLUMNS}})
    out = {}
    for pipeline in MODELS:
        ap.run(pipeline, data=SAMPLE, out=root / pipeline, config=cfg, backend="cpu")
        out[pipeline] = json.loads((root / pipeline / "manifest.json").read_text())
    return out


@pytest.mark.parametrize("pipeline", list(MODELS))
def test_each_pipelines_manifest_is_its_typed_model(manifests, pipeline):
    m = parse_manifest(manifests[pipeline])
    assert type(m) is MODELS[pipeline] and m.backend.name == "cpu" and m.input.rows_rejected == 16
    assert m.model_dump(mode="json", exclude_unset=True) == manifests[pipeline]  # nothing lost, nothing added


def test_a_wrong_field_is_refused_naming_it_and_new_fields_are_kept(manifests):
    bad = json.loads(json.dumps(manifests["backtest"]))
    bad["grid"]["size"] = "many"
    with pytest.raises(ManifestError, match=r"^backtest manifest: grid.size: Input should be a valid integer"):
        check_manifest(bad)
    del bad["grid"]["size"]
    with pytest.raises(ManifestError, match="grid.size: Field required"):
        check_manifest(bad)
    extra = {**manifests["daily"], "signals": {"strategies": 2}}  # a field a pipeline adds on its own
    check_manifest(extra)
    assert parse_manifest(extra).model_dump(exclude_unset=True)["signals"] == {"strategies": 2}
    check_manifest({"pipeline": "someone-else's", "anything": 1})  # not one of ours: left alone


def test_the_api_documents_the_manifest_models(tmp_path):
    from alphapulse.pipelines.gpu.api import create_app

    schema = create_app([tmp_path]).openapi()["components"]["schemas"]
    assert {"DailyManifest", "BacktestManifest", "PortfolioManifest", "ModelsManifest", "GridRecord"} <= set(schema)
    detail = json.dumps(schema["RunDetail"]["properties"]["manifest"])
    for name in ("Daily", "Backtest", "Portfolio", "Models"):
        assert f"#/components/schemas/{name}Manifest" in detail
