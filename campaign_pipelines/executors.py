"""The executor every template's job runs its steps with: a deployment's choice
(CAMPAIGN_EXECUTOR), never the templates'. See docs/executors.md.

- `in_process` (default): the steps one after the other in the run's process; the fastest
  for one machine (no process start-up per step).
- `multiprocess`: each step in its own process, on the run's machine.
- `celery`: each step as a task on a Celery broker, run by `dagster-celery worker`
  processes on any machine that shares CAMPAIGN_DATA_DIR, the Dagster instance and the
  Campaign database. Broker and result backend come from CAMPAIGN_CELERY_BROKER and
  CAMPAIGN_CELERY_BACKEND, read when a run starts (a password in them is never shown);
  CAMPAIGN_CELERY_QUEUE names the queue (default `dagster`).
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from campaign_pipelines.deployment import fixed_by_deployment
from campaign_pipelines.errors import CampaignError

DEFAULT_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
DEFAULT_BACKEND = "rpc://"
BROKER_ENV = "CAMPAIGN_CELERY_BROKER"
BACKEND_ENV = "CAMPAIGN_CELERY_BACKEND"
QUEUE_ENV = "CAMPAIGN_CELERY_QUEUE"  # the workers' -q; default dagster
BROKER_TIMEOUT_SECONDS = 5.0


def _from_env(variable: str, default: str) -> Any:
    # Through the env, the value is read by the run and never stored in its config.
    return {"env": variable} if os.environ.get(variable) else default


def executor_def(name: str) -> dg.ExecutorDefinition:
    """The deployment's executor, with its settings fixed: its run config schema is empty,
    so a run config cannot change them (the Launchpad offers none)."""
    if name == "in_process":
        return fixed_by_deployment(dg.in_process_executor, {})
    if name == "multiprocess":
        return fixed_by_deployment(dg.multiprocess_executor, {})
    from dagster_celery import celery_executor

    # A step whose worker dies goes back to the queue for another worker (acknowledged once
    # done, rejected on a lost worker): steps restart from their inputs, and a merge commits
    # at most once per root run, so running one again is safe.
    config_source: dict[str, Any] = {"task_acks_late": True, "task_reject_on_worker_lost": True}
    if queue := os.environ.get(QUEUE_ENV):
        config_source["task_default_queue"] = queue
    settings = {
        "broker": _from_env(BROKER_ENV, DEFAULT_BROKER),
        "backend": _from_env(BACKEND_ENV, DEFAULT_BACKEND),
        "config_source": config_source,
    }
    return fixed_by_deployment(celery_executor, settings, name="campaign_celery")


def check_broker() -> None:
    """Refuse to launch a run whose steps would wait forever on a broker that does not answer."""
    from kombu import Connection

    url = os.environ.get(BROKER_ENV) or DEFAULT_BROKER
    try:
        with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS) as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
    except Exception as exc:
        shown = Connection(url).as_uri()  # the URL with its password masked
        raise CampaignError(
            f"the Celery broker {shown} ({BROKER_ENV}) does not answer ({type(exc).__name__}: {exc}); "
            "start it or fix the URL: no run was launched."
        ) from None
