"""Errors a user can cause. Each carries one sentence naming the file, line, column or
template key at fault; the CLI and the ops print it as is, never a traceback."""

from schemas.errors import CampaignError

__all__ = ["CampaignError", "TemplateError", "RunFailed"]


class TemplateError(CampaignError):
    """A job template that does not validate."""


class RunFailed(CampaignError):
    """The run stops on purpose (reject policy, bad file): nothing was written."""
