"""Dagster resources and what they stand on: the Campaign database (`campaign_db`), the
exchange file store (`file_store`), the IO managers of step outputs (`work_io`) and
rejects (`rejects_io`), and the paths of a deployment (`paths`). The package imports
none of them, so that `resources.paths` costs no Dagster import."""
