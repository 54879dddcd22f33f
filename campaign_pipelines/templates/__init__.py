"""Job templates: the typed model of the spec's YAML, and the catalog that loads them.

Built-in templates ship inside the package (read-only); user templates live in
CAMPAIGN_TEMPLATES_DIR. A template that fails validation is reported with its file,
key and reason, and the others still load.
"""

from campaign_pipelines.errors import TemplateError
from campaign_pipelines.templates.catalog import Catalog, Template, builtin_sources, check_endpoints, load_catalog, parse_template
from campaign_pipelines.templates.common import (
    FILTER_OPERATORS, Collector, DailyPartitions, Expected, Model, NumberFormat, Partitions, Schedule, check_pattern,
    filter_conditions, filter_value, format_validation_error, has_date_field,
)
from campaign_pipelines.templates.exports import EXPORT_LAUNCH_KEYS, Destination, Differential, ExportColumn, ExportSource, ExportTemplate
from campaign_pipelines.templates.imports import (
    LAUNCH_KEYS, ColumnMapping, ErrorPolicy, ImportTarget, ImportTemplate, ListTarget, Source, Width,
)

__all__ = [
    "TemplateError", "Catalog", "Template", "builtin_sources", "check_endpoints", "load_catalog", "parse_template",
    "FILTER_OPERATORS", "Collector", "DailyPartitions", "Expected", "Model", "NumberFormat", "Partitions", "Schedule",
    "check_pattern", "filter_conditions", "filter_value", "format_validation_error", "has_date_field",
    "EXPORT_LAUNCH_KEYS", "Destination", "Differential", "ExportColumn", "ExportSource", "ExportTemplate",
    "LAUNCH_KEYS", "ColumnMapping", "ErrorPolicy", "ImportTarget", "ImportTemplate", "ListTarget", "Source", "Width",
]
