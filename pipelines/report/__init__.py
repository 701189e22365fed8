"""Report folders: atomic writing, the manifest, summary.md and the self-contained summary.html.

Public names are imported from their modules on first use (PEP 562), so importing one
room never imports its neighbours' heavier dependencies.
"""
from alphapulse._exports import lazy_exports

_EXPORTS = {
    "AnyManifest": "manifest",
    "BacktestManifest": "manifest",
    "check_manifest": "manifest",
    "check_out_dir": "write",
    "correlation_matrix": "views",
    "DailyManifest": "manifest",
    "format_value": "write",
    "headline_table": "views",
    "indicator_snapshot": "views",
    "LOCK_WAIT_SECONDS": "write",
    "Manifest": "manifest",
    "MANIFEST": "write",
    "ManifestError": "manifest",
    "MARK": "write",
    "MARK_FORMAT": "write",
    "markdown_table": "write",
    "MAX_HEATMAP_LABELS": "sections",
    "MAX_MANIFEST_BYTES": "write",
    "MAX_TABLE_ROWS": "markup",
    "minimal_page": "html",
    "model_scores": "views",
    "ModelsManifest": "manifest",
    "parse_manifest": "manifest",
    "PortfolioManifest": "manifest",
    "rejected_note": "write",
    "render": "html",
    "ReportBusyError": "write",
    "ReportError": "write",
    "ReportPathError": "write",
    "scratch_folder": "write",
    "all_specs": "spec",
    "report_spec": "spec",
    "run_lines": "views",
    "ReportSpec": "spec",
    "stage_rows": "views",
    "SUMMARY": "write",
    "SUMMARY_HTML": "html",
    "top_combinations": "views",
    "write_report": "write",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
