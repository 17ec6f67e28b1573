"""The data side of dealcast: the data contract, loading and validation, importers, the
synthetic CRM world, and (point-in-time) snapshots, features and labels.

`features` imports nothing from `models`, `training` or `serving`.
"""

from features.errors import ExportInvalid, ValidationReport, Violation
from features.loading import CrmExport, build_export, load_export, validate_export
from features.stages import StageConfig

__all__ = [
    "CrmExport",
    "ExportInvalid",
    "StageConfig",
    "ValidationReport",
    "Violation",
    "build_export",
    "load_export",
    "validate_export",
]
