"""Importers: raw CRM exports converted into the data contract (spec/data-contract.md).

Each importer reads a CRM's own files, checks every value it maps, never carries fields that
leak a deal's outcome, and writes a contract export folder that `features.loading` reads.
"""

from features.importers.salesforce import (
    SalesforceImportError,
    SalesforceImportReport,
    import_salesforce,
)
from features.importers.source_files import DroppedColumn, SourceFileReport

__all__ = [
    "DroppedColumn",
    "SalesforceImportError",
    "SalesforceImportReport",
    "SourceFileReport",
    "import_salesforce",
]
