"""A try of :class:`~airflow_fc_async.operators.fc.FcInvokeAsyncOperator` and the FC tasks of earlier tries.

A retry, or a repeat of a try (a worker lost, a heartbeat missed), should follow the task an earlier try invoked
instead of running the function again, and must never take another DAG run's task for its own. What an earlier try
left: the task state store (Airflow 3.3+; the try's task, written before the invoke) and, on every version,
the FC tasks whose ids carry this task instance's prefix (``core/task_ids.py``). Runtime only: the operator
imports this module in ``execute``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_fc_async import compat
from airflow_fc_async.core import task_ids
from airflow_fc_async.core.errors import FcError, FcNotFoundError
from airflow_fc_async.operators.outcome import STATE_KEY, TaskRef, airflow_error

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_fc_async.core.models import AsyncInvocation, AsyncTask
    from airflow_fc_async.hooks.fc import FcHook

__all__ = ["EarlierTries"]

_LOOKUP_LIMIT = 50


@dataclass(eq=False)
class EarlierTries:
    """What this task instance's earlier tries left, read once per try (``execute``).

    ``stop_on_kill`` is the operator's: a run cleared after a try invoked stops that try's task, so it is not
    re-attached to (see :meth:`_cleared_since`).
    """

    context: Context
    hook: FcHook
    function_name: str
    qualifier: str
    log: Any
    stop_on_kill: bool = field(kw_only=True)
    store: Any | None = field(init=False)
    """The task state store (Airflow 3.3+), else None."""
    saved: Any = field(init=False)
    """What an earlier try kept in it (a :class:`TaskRef` dict and the clear number), else None."""

    def __post_init__(self) -> None:
        self.store, self.saved = self._read_store()

    def _read_store(self) -> tuple[Any | None, Any]:
        """The task state store (3.3+, else None) and what an earlier try of this task instance kept in it."""
        store = compat.task_state_store(self.context)
        if store is None:
            return None, None
        try:
            return store, store.get(STATE_KEY)
        except Exception as err:
            self.log.warning("Reading the task state store failed: %s", err)
            return store, None

    def find(self, prefix: str, try_number: int, explicit: bool) -> AsyncTask | None:
        """An earlier try's task to re-attach to (active) or to take the result of (Succeeded); else None.

        First the task state store (Airflow 3.3+), then a ListAsyncTasks lookup by this task instance's prefix
        (every version; also covers a worker lost between invoke and store). A failed task is never reused.
        """
        if self.store is not None:
            if self._cleared_since():
                return None
            task = self._saved_task(prefix, explicit)
            if task is not None:
                return task
        if try_number <= 1:
            return None
        lookup = prefix if explicit else f"{prefix}-t"
        try:
            tasks = list(
                self.hook.list_async_tasks(
                    self.function_name, qualifier=self.qualifier, prefix=lookup, limit=_LOOKUP_LIMIT
                )
            )
        except FcError as err:
            raise airflow_error(err, f"Looking up earlier tries' FC tasks (prefix {lookup})") from err
        picked = task_ids.pick_earlier_task(prefix, tasks, try_number, explicit=explicit)
        if picked is None:
            if tasks:
                self.log.info("No earlier try's FC task to re-attach to (%d found, all ended)", len(tasks))
            return None
        try:  # a fresh full read: events, error text and the return payload
            picked = self.hook.get_async_task(self.function_name, picked.task_id, qualifier=self.qualifier)
        except FcError as err:
            raise airflow_error(err, f"Reading FC async task {picked.task_id}") from err
        return self._reusable(picked, f"found by prefix {lookup}")

    def not_this_request(self, inv: AsyncInvocation, explicit: bool) -> str:
        """Why an existing task with this id and payload is not provably this try's ('' when it is).

        A user-given id is an idempotency key: the same payload suffices. A generated id names this DAG run's
        try, so its task must also be this run's: only the task state store (3.3+) can prove that (it names the id,
        written before the invoke). A DAG run deleted and created again under its run id can carry the same
        marker (``dags test`` with the same date), so without a store a 409 is never taken as this run's.
        """
        if inv.conflict == "retry" or explicit:
            return ""
        if self.store is not None:
            if isinstance(self.saved, dict) and self.saved.get("task_id") == inv.task_id:
                return ""
            return "the task state store of this task instance has no record of invoking it"
        return (
            "without a task state store (before Airflow 3.3) nothing proves it is this DAG run's: a DAG run deleted "
            "and created again under the same run id (e.g. `airflow dags test` twice with the same date) meets "
            "the earlier run's task ids"
        )

    def remember(self, ref: TaskRef) -> None:
        """Store the task in the task state store (3.3+) before waiting or deferring, for the next try."""
        store = compat.task_state_store(self.context)
        if store is None:
            return
        try:
            store.set(STATE_KEY, {**ref.to_dict(), "clear_number": compat.dag_run_clear_number(self.context)})
        except Exception as err:  # the prefix lookup still finds it
            self.log.warning("Could not store FC task %s in the task state store: %s", ref.task_id, err)

    def _cleared_since(self) -> bool:
        """Whether a user cleared the run after the stored try invoked: then that try's task is not reused.

        The clear killed that try, so its FC task is being stopped (``stop_on_kill``; in deferrable mode by the
        trigger's ``on_kill``, which may come after this try starts): re-attaching would follow a task about to
        end Stopped. A clear asks for a new run, so a new task is invoked (no prefix lookup either).
        """
        saved = self.saved
        if not self.stop_on_kill or not isinstance(saved, dict):
            return False
        then, now = saved.get("clear_number"), compat.dag_run_clear_number(self.context)
        if not isinstance(then, int) or now is None or now <= then:
            return False
        self.log.info(
            "The run was cleared after FC task %s was invoked (it is stopped): invoking a new task",
            saved.get("task_id"),
        )
        return True

    def _saved_task(self, prefix: str, explicit: bool) -> AsyncTask | None:
        saved = self.saved
        if not isinstance(saved, dict) or not saved.get("task_id"):
            return None
        if saved.get("function_name") != self.function_name or saved.get("qualifier") != self.qualifier:
            self.log.info("The stored FC task belongs to another function or qualifier: not reused")
            return None
        if task_ids.try_number_of(prefix, str(saved["task_id"]), explicit=explicit) is None:
            self.log.info("The stored FC task %s is not a try of %s: not reused", saved["task_id"], prefix)
            return None
        try:
            task = self.hook.get_async_task(self.function_name, saved["task_id"], qualifier=self.qualifier)
        except FcNotFoundError:
            return None
        except FcError as err:
            raise airflow_error(err, f"Reading FC async task {saved['task_id']}") from err
        return self._reusable(task, "from the task state store")

    def _reusable(self, task: AsyncTask, source: str) -> AsyncTask | None:
        if not task.is_terminal:
            self.log.info(
                "Re-attaching to FC task %s of an earlier try (%s; %s)",
                task.task_id,
                task.status.value,
                source,
            )
            return task
        if task.is_successful:
            self.log.info("FC task %s of an earlier try Succeeded (%s)", task.task_id, source)
            return task
        self.log.warning(
            "FC task %s of an earlier try ended %s (%s): invoking a new task",
            task.task_id,
            task.status.value,
            source,
        )
        return None
