"""How a step ends when something goes wrong: a transient error (the database's, or an
endpoint's connection failing or dropping) asks Dagster to run the step again
(`retried_on_transient_errors`); any other error fails the run with one sentence and the
Campaign status `failed` (`fails_clearly`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import dagster as dg
import sqlalchemy as sa

from campaign_pipelines.errors import CampaignError
from campaign_pipelines.names import STATUS_TAG
from resources.campaign_db import transient_error
from resources.endpoints import EndpointInterrupted
from resources.work_io import root_run_id


def set_status(context: dg.OpExecutionContext, status: str) -> None:
    context.instance.add_run_tags(context.run_id, {STATUS_TAG: status})


# A transient error in a step that uses the database (resources/campaign_db.py:
# transient_error) or an endpoint (resources/endpoints.py: EndpointInterrupted): the step
# asks Dagster to run it again, from its inputs in the work IO manager, on a new database
# session or a new connection, after 1, 3 and 7 s. Only those errors: a step whose process
# was killed fails the run, for a re-execution from failure (docs/executors.md).
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL)


class TransientError(Exception):
    """The cause a retried step shows: the error's sentence, without SQL or traceback."""


def retried_on_transient_errors(policy: dg.RetryPolicy) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Hand a transient error to Dagster's step retry (`dg.RetryRequested`) while `policy`
    has tries left; after the last, the error fails the run (fails_clearly)."""

    def decorate(step: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(step)
        def wrapper(context: dg.OpExecutionContext, *args: Any, **kwargs: Any) -> Any:
            try:
                return step(context, *args, **kwargs)
            except EndpointInterrupted as exc:
                tries = context.retry_number
                if tries >= policy.max_retries:
                    raise EndpointInterrupted(f"{str(exc).removesuffix('.')}, and on {tries} more tries.") from None
                cause: Exception = TransientError(str(exc))
                what = str(exc)
            except Exception as exc:
                what, tries = transient_error(exc), context.retry_number
                if what is None or tries >= policy.max_retries:
                    raise
                context.resources.campaign_db.reset_session()
                what = f"{what} ({_first_line(exc)}); nothing was written"
                cause = TransientError(_database_failure(context, exc))
            delay = policy.calculate_delay(tries + 1)
            context.log.warning(
                f"{context.op.name}: {what}; trying again in {delay:g} s (try {tries + 2} of {policy.max_retries + 1})."
            )
            raise dg.RetryRequested(max_retries=policy.max_retries, seconds_to_wait=delay) from cause

        return wrapper

    return decorate


def fails_clearly(step: Callable[..., Any]) -> Callable[..., Any]:
    """Turn any error into a failed run with a one-sentence description (the database was
    not touched, or was rolled back); a step retry asked for goes through. The work data
    stays, for a re-execution from failure."""

    @functools.wraps(step)
    def wrapper(context: dg.OpExecutionContext, *args: Any, **kwargs: Any) -> Any:
        try:
            return step(context, *args, **kwargs)
        except dg.RetryRequested:
            _drop_local_work(context)
            raise
        except CampaignError as exc:
            message = str(exc)
        except Exception as exc:
            message = _database_failure(context, exc)
            if message is None:
                # A bug, not the user's input: keep the traceback in the log.
                context.log.exception("unexpected error")
                message = f"unexpected error in {context.op.name}: {type(exc).__name__}: {exc}"
            elif file := getattr(kwargs.get("state"), "shown", None):
                message = f"{file}: {message}"
        _drop_local_work(context)
        set_status(context, "failed")
        # One line, whatever a quoted value held (a reason may quote a multi-line value).
        message = " ".join(message.split("\n")).replace("\r", " ")
        raise dg.Failure(description=message, allow_retries=False) from None

    return wrapper


def _drop_local_work(context: dg.OpExecutionContext) -> None:
    """A failed step's local copy of work data that is shared elsewhere (work_io.py)."""
    work = getattr(context.resources, "work_io_manager", None)
    if work is not None:
        work.drop_local(root_run_id(context.run))


def _database_failure(context: dg.OpExecutionContext, exc: Exception) -> str | None:
    """A database error's sentence (nothing was written: the step's transaction was rolled
    back); None for any other error."""
    if (what := transient_error(exc)) is not None:
        tries = f", and on {context.retry_number} more tries" if context.retry_number else ""
        return f"the Campaign database failed in {context.op.name} ({what}: {_first_line(exc)}){tries}; nothing was written."
    if isinstance(exc, sa.exc.DBAPIError):
        # The server refused a statement (a trigger, a constraint another writer added, a
        # full disk): its own message for the user, the statement in the run's log.
        context.log.error(f"{context.op.name}: the database refused a statement: {exc}")
        return f"the Campaign database refused {context.op.name} ({_first_line(exc)}); nothing was written."
    return None


def _first_line(exc: BaseException) -> str:
    """A database error's own message, without SQLAlchemy's statement and links."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__
