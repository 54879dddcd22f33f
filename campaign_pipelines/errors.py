"""Errors a user can cause. Each carries one sentence naming the file, line, column or
template key at fault; the CLI and the ops print it as is, never a traceback."""


class CampaignError(Exception):
    """A problem with the user's input (template, file, launch config)."""


class TemplateError(CampaignError):
    """A job template that does not validate."""


class RunFailed(CampaignError):
    """The run stops on purpose (reject policy, bad file): nothing was written."""
