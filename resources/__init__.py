"""Dagster resources: the Campaign database and the exchange file store."""

from resources.campaign_db import CampaignDatabase, get_engine
from resources.file_store import FileStore

__all__ = ["CampaignDatabase", "FileStore", "get_engine"]
