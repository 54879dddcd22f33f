"""The one place this project reaches into Dagster's internals (`dagster._core`): what the
UI and the daemon do when they create, launch and re-execute a run, for which Dagster
1.13 has no public API. Everything else uses `dagster`'s public names only
(tests/test_layers.py holds every other module to it).

- A run's origins as the UI creates them: `remote_origin` (the workspace's code location
  and the job, what the UI's job page and Re-execute look for) and `code_origin` (the
  module a step process loads the job from). Public `dg.execute_job` and
  `dg.build_reconstructable_job` create runs of their own, with neither origin.
- `execute_created_run`: run a run already created (queued or not) in this process, as
  the run worker does. Public `execute_job` cannot take a created run.
- `from_failure_plan`: the steps a re-execution from failure runs, and the outputs it
  reuses, as the UI computes them for the run it creates. Public `ReexecutionOptions`
  only serves `execute_job`, which creates and runs at once (no queue, no UI launch).
"""

from __future__ import annotations

import os
import sys

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.execution.api import create_execution_plan, execute_run
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.plan.state import KnownExecutionState
from dagster._core.origin import JobPythonOrigin
from dagster._core.remote_origin import ManagedGrpcPythonEnvCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

# The repository name Dagster gives a module's `Definitions`.
SINGLETON_REPOSITORY_NAME = "__repository__"


def reconstructable_job(module: str, name: str) -> ReconstructableJob:
    """The job as another process loads it: `module`'s `defs`."""
    repository = ReconstructableRepository.for_module(module, "defs", working_directory=os.getcwd())
    return repository.get_reconstructable_job(name)


def code_origin(module: str, name: str) -> JobPythonOrigin:
    return reconstructable_job(module, name).get_python_origin()


def remote_origin(module: str, location: str, job_name: str) -> RemoteJobOrigin:
    loadable = LoadableTargetOrigin(executable_path=sys.executable, module_name=module, working_directory=os.getcwd())
    code_location = ManagedGrpcPythonEnvCodeLocationOrigin(loadable_target_origin=loadable, location_name=location)
    return RemoteJobOrigin(RemoteRepositoryOrigin(code_location, SINGLETON_REPOSITORY_NAME), job_name)


def execute_created_run(job: dg.JobDefinition, module: str, run: dg.DagsterRun, instance: dg.DagsterInstance, *, in_process: bool) -> None:
    """Run `run` here: from `job` as built in this process when its steps run in it,
    else from `module` (other executors' step processes load the job from there)."""
    execute_run(InMemoryJob(job) if in_process else reconstructable_job(module, job.name), run, instance)


def from_failure_plan(instance: dg.DagsterInstance, job: dg.JobDefinition, parent: dg.DagsterRun) -> ExecutionPlan:
    """The plan of a re-execution of `parent` from failure: its failed and skipped steps,
    on the outputs of the steps that succeeded."""
    step_keys, known_state = KnownExecutionState.build_resume_retry_reexecution(instance, parent)
    return create_execution_plan(
        InMemoryJob(job), parent.run_config, step_keys_to_execute=step_keys, known_state=known_state, tags=parent.tags
    )
