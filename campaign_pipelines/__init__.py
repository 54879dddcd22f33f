"""Campaign Pipelines: Adobe Campaign-style import and export job templates as Dagster jobs."""
