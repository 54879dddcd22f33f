"""The error a user can fix: one sentence naming the file, line, column or key at fault,
which the CLI and the ops print as is, never a traceback. Defined at the bottom of the
layers (`schemas` ← `resources` ← `campaign_pipelines`) so that each raises the same
class; `campaign_pipelines.errors` adds the kinds the pipelines raise."""


class CampaignError(Exception):
    """A problem with the user's input (template, file, data schema, launch config)."""
