"""The models pipeline: features, walk-forward models, ensembles and the signal's backtest;
the estimator factory and model files.

Public names are imported from their modules on first use (PEP 562), so importing one
room never imports its neighbours' heavier dependencies.
"""
from alphapulse._exports import lazy_exports

_EXPORTS = {
    "analyse_task": "pipeline",
    "MODELS": "pipeline",
    "analyse": "pipeline",
    "backtest_stage": "pipeline",
    "canonical_skops": "estimators",
    "check_models_config": "pipeline",
    "compute_key": "pipeline",
    "ensemble_stage": "pipeline",
    "Ensembles": "pipeline",
    "estimator": "estimators",
    "evaluate_stage": "pipeline",
    "feature_names": "pipeline",
    "Features": "pipeline",
    "features_stage": "pipeline",
    "load_model": "estimators",
    "load_stage": "pipeline",
    "model_files": "estimators",
    "model_specs": "pipeline",
    "ModelFileError": "estimators",
    "ModelsRequest": "pipeline",
    "ModelsResult": "pipeline",
    "predictions_frame": "pipeline",
    "prepare_models": "pipeline",
    "PRICE_FIELDS": "pipeline",
    "ProbabilityOfOne": "estimators",
    "report_stage": "pipeline",
    "run_models": "pipeline",
    "train_stage": "pipeline",
    "Trained": "pipeline",
    "TreeOrderForest": "estimators",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
