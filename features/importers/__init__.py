"""Importers: raw CRM exports converted into the data contract (spec/data-contract.md).

Each importer reads a CRM's own files, checks every value it maps, never carries fields that
leak a deal's outcome, and writes a contract export folder that `features.loading` reads.
"""

from features.importers.hubspot import HubSpotImportError, HubSpotImportReport, import_hubspot
from features.importers.mapped_csv import CsvImportError, CsvImportReport, import_csv
from features.importers.mapping import MappingError, load_mapping
from features.importers.salesforce import (
    SalesforceImportError,
    SalesforceImportReport,
    import_salesforce,
)
from features.importers.source_files import DroppedColumn, SourceFileReport

__all__ = [
    "CsvImportError",
    "CsvImportReport",
    "DroppedColumn",
    "HubSpotImportError",
    "HubSpotImportReport",
    "MappingError",
    "SalesforceImportError",
    "SalesforceImportReport",
    "SourceFileReport",
    "import_csv",
    "import_hubspot",
    "import_salesforce",
    "load_mapping",
]
