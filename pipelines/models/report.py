"""The models pipeline's report: ``summary.md``, the manifest, the report stage, and its part of
``summary.html``, the CLI and the Prefect artifacts (:data:`REPORT`).

A field of the models report is added here alone: the manifest (:func:`report_stage`), the summary
(:func:`_summary_md`), the page (:func:`_section_models`), the CLI (:func:`cli_lines`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from alphapulse.pipelines.data.load import LoadedBars
from alphapulse.pipelines.models.estimators import MODEL_TARGETS, model_files
from alphapulse.pipelines.report.manifest import check_manifest
from alphapulse.pipelines.report.markup import html_table
from alphapulse.pipelines.report.spec import ReportSpec
from alphapulse.pipelines.report.views import model_scores, run_lines
from alphapulse.pipelines.report.write import markdown_table, write_report
from alphapulse.pipelines.runtime.backend import Backend
from alphapulse.pipelines.runtime.cost import stage_table_lines
from alphapulse.pipelines.runtime.stages import TaskRecord, run_record, run_sections

if TYPE_CHECKING:
    from alphapulse.pipelines.config import ModelConfig
    from alphapulse.pipelines.models.pipeline import Ensembles, Features, ModelsRequest, Trained

log = logging.getLogger(__name__)


@dataclass
class ModelsResult:
    out_dir: Path
    manifest: dict
    tables: dict = field(repr=False)


def _model_record(m: ModelConfig) -> dict:
    from alphapulse.pipelines.models.pipeline import _params  # the fitted models' own parameters

    p = _params(m)
    used = {"ridge": ["alpha"], "logistic": ["C", "max_iter"], "knn": ["n_neighbors"],
            "random_forest": ["n_estimators", "max_depth", "min_samples_leaf", "max_features", "max_samples", "seed"],
            "xgboost": ["n_estimators", "max_depth", "learning_rate", "early_stopping_rounds", "subsample",
                        "colsample_bytree", "min_child_weight", "reg_lambda", "n_threads", "seed"]}
    return {"name": m.label, "kind": m.kind, "scope": m.scope, "target": MODEL_TARGETS[m.kind],
            "params": {k: p[k] for k in used[m.kind]}}


def _summary_md(manifest: dict, scores: pd.DataFrame, bt: pd.DataFrame, weights: pd.DataFrame) -> str:
    inp, be, wf = manifest["input"], manifest["backend"], manifest["walk_forward"]
    lines = [
        "# AlphaPulse models report", "",
        f"- run `{manifest['run_id']}` at {manifest['created_at']}",
        f"- backend: **{be['name']}** ({be['reason']}), dtype {be['dtype']}",
        f"- input: `{inp['path']}`: {inp['rows_accepted']:,} rows accepted, {inp['rows_rejected']:,} rejected; "
        f"{inp['symbols']} symbols",
        f"- target: forward return over {manifest['horizon_bars']} bars; {len(manifest['features'])} features "
        f"known at each close: {', '.join(manifest['features'])}",
        f"- walk-forward: {wf['steps']} steps, {'expanding' if wf['expanding'] else 'rolling'} train windows of "
        f"{wf['train_bars']} bars, test windows of {wf['test_bars']}, purge {wf['purge_bars']}, validation "
        f"{wf['validation_bars']}; out of sample {wf['oos_start']} .. {wf['oos_end']}",
        "", "## Models", "",
        markdown_table(pd.DataFrame([{"name": m["name"], "kind": m["kind"], "scope": m["scope"], "target": m["target"],
                                      "params": ", ".join(f"{k}={v}" for k, v in m["params"].items())}
                                     for m in manifest["models"]])),
        "", "## Out-of-sample scores (all steps)", "",
        "IC: Spearman rank correlation across symbols per date between the prediction and the realised forward "
        "return; t over every date, and over every horizon-th date (non-overlapping targets); hit rate: same side "
        "of the date's median.", "",
    ]
    allp = scores[scores["step"] == -1][["model", "kind", "scope", "ic_mean", "ic_std", "ic_tstat",
                                          "ic_tstat_nonoverlap", "ic_positive", "hit_rate", "n_dates"]]
    lines += [markdown_table(allp)]
    lines += ["", f"## Signal backtest (ensemble `{manifest['signal']['ensemble']}`, long where its score > "
                  f"{manifest['signal']['long_threshold']}, equal-weight portfolio)", "",
              markdown_table(bt[["strategy", "total_return", "cagr", "ann_volatility", "sharpe", "max_drawdown",
                                 "avg_long_fraction"]])]
    last = weights[weights["step"] == weights["step"].max()]
    if len(last):
        lines += ["", "## Ensemble weights of the last step", "",
                  markdown_table(last.pivot(index="model", columns="ensemble", values="weight").reset_index())]
    if manifest["saved_models"]:
        lines += ["", f"Saved models (last step): {', '.join(manifest['saved_models'])}"]
    lines += stage_table_lines(manifest)
    for name, rounds in (manifest.get("boosting_rounds") or {}).items():
        lines += ["", f"Boosting rounds of `{name}` per step (early stopping on the validation slice): "
                      + ", ".join("-" if r is None else str(r) for r in rounds) + "."]
    fit = manifest.get("fit_seconds") or {}
    if fit:
        lines += ["", "Fit seconds per model (all steps): " + ", ".join(f"{k} {v:.3f}" for k, v in fit.items()) + "."]
    return "\n".join(lines) + "\n"


def report_stage(request: ModelsRequest, backend: Backend, loaded: LoadedBars, feats: Features, trained: Trained,
                 ens: Ensembles, scores: pd.DataFrame, bt: pd.DataFrame, stages: dict, *,
                 run_id: str | None = None, cached: bool = False,
                 records: tuple[TaskRecord, ...] = ()) -> ModelsResult:
    from alphapulse.pipelines.models.pipeline import predictions_frame

    config = request.config
    mc = config.models
    predictions = predictions_frame(feats, trained, ens)
    tables = {"predictions.parquet": predictions, "model_scores.parquet": scores,
              "ensemble_weights.parquet": ens.weights, "backtest.parquet": bt}
    if len(loaded.rejected):
        tables["rejected.parquet"] = loaded.rejected
    files = {}
    last = trained.result.steps[-1]
    window = {"start": str(feats.timestamps[last.split.train_start]),
              "end": str(feats.timestamps[last.split.train_stop - 1])}
    if mc.save_models:
        for m in mc.models:
            model = last.models.get(m.label)
            if model is None:
                continue
            try:
                files |= model_files(model, name=m.label, kind=m.kind, scope=m.scope, features=feats.names,
                                     symbols=feats.symbols, config_hash=config.hash(), window=window)
            except ValueError as e:  # a GPU model without a scikit-learn form: reported, not fatal
                log.warning("model %s not saved: %s", m.label, e)
    wf = mc.walk_forward
    manifest = {
        **run_record("models", backend=backend, config=config, data_path=request.data_path, loaded=loaded,
                     run_id=run_id),
        "horizon_bars": mc.horizon_bars,
        "features": feats.names,
        "models": [_model_record(m) for m in mc.models],
        "walk_forward": {"steps": len(trained.splits), "train_bars": wf.train_bars, "test_bars": wf.test_bars,
                         "validation_bars": wf.validation_bars, "purge_bars": mc.purge(), "expanding": wf.expanding,
                         "oos_start": str(feats.timestamps[trained.splits[0].test_start].date()),
                         "oos_end": str(feats.timestamps[trained.splits[-1].test_stop - 1].date()),
                         "splits": [vars(s) for s in trained.splits]},
        "ensembles": mc.ensemble.methods,
        "signal": mc.signal.model_dump(),
        "backtest": bt.astype({"start": str, "end": str}).to_dict(orient="records"),
        "scores": scores[scores["step"] == -1][["model", "ic_mean", "ic_tstat", "hit_rate"]].to_dict(orient="records"),
        "saved_models": sorted(n for n in files if n.endswith(".json")),
        "stages": dict(stages),
        "fit_seconds": {m.label: round(sum(st.seconds.get(m.label, 0.0) for st in trained.result.steps), 4)
                        for m in mc.models},
        # boosting rounds each step's model kept (early stopping on the validation slice)
        "boosting_rounds": {m.label: [st.rounds.get(m.label) for st in trained.result.steps]
                            for m in mc.models if m.kind == "xgboost"},
        "cached_compute": cached,
    }
    # cost per unit: out-of-sample predictions made (rows of predictions.parquet x models)
    manifest.update(run_sections(config, stages, work=("million predictions", len(predictions) * len(mc.models) / 1e6),
                                 records=records))
    check_manifest(manifest)  # its declared shape, before anything is written
    out = write_report(request.out_dir, tables=tables, manifest=manifest,
                       summary=_summary_md(manifest, scores, bt, ens.weights), files=files)
    return ModelsResult(out, manifest, tables)


def _section_models(m: dict, tables, files) -> str | None:
    scores = tables.get("model_scores.parquet")
    if scores is None or scores.empty:
        return None
    out = ["<h2>Models: out-of-sample scores</h2>", html_table(model_scores(scores))]
    bt = tables.get("backtest.parquet")
    if bt is not None and len(bt):
        out.append("<h3>Signal backtest against buy and hold</h3>" + html_table(bt))
    ew = tables.get("ensemble_weights.parquet")
    if ew is not None and len(ew):
        last = ew[ew["step"] == ew["step"].max()] if "step" in ew else ew
        out.append("<h3>Ensemble weights (last step)</h3>" + html_table(last))
    return "".join(out)


def cli_lines(manifest: dict, out_dir) -> list[str]:
    """The CLI's lines for this report (the stage times follow them)."""
    inp, wf = manifest["input"], manifest["walk_forward"]
    lines = run_lines(manifest, out_dir, rows_extra=f"; {inp['symbols']} symbols; {len(manifest['features'])} features")
    lines.append(f"walk-forward: {wf['steps']} steps, out of sample {wf['oos_start']} .. {wf['oos_end']}")
    for s in manifest["scores"]:
        lines.append(f"  {s['model']:<20} IC {s['ic_mean']:+.4f} (t {s['ic_tstat']:+.2f}), "
                     f"hit rate {s['hit_rate']:.3f}")
    for b in manifest["backtest"]:
        lines.append(f"  backtest {b['strategy']:<13} Sharpe {b['sharpe']:.3f}, total return {b['total_return']:+.2%}, "
                     f"max drawdown {b['max_drawdown']:.2%}")
    return lines


def headline(manifest: dict, tables) -> tuple[str, pd.DataFrame] | None:
    scores = tables.get("model_scores.parquet")
    return None if scores is None else ("Out-of-sample scores per model", model_scores(scores))


REPORT = ReportSpec("models", (_section_models,), cli_lines, headline, main_table="model_scores.parquet")
