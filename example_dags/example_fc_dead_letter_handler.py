"""Dead letters start a DAG (Airflow 3.0+): an MNS dead-letter queue as the event source of an asset.

Producer, ``example_fc_dead_letter_producer``: the seed scenario's function (``my-fc-job-watched``, sleeps past
its 3 s timeout) gets its async config as code (one retry, failures to the dedicated queue ``fc-dead-letters``)
and is invoked without waiting; after the retry, FC sends the dead letter to the queue.

Handler, ``example_fc_dead_letter_handler``, scheduled on the asset ``fc_dead_letters``: the asset's watcher
(``MessageQueueTrigger(scheme="mns", ...)``, run by the triggerer) turns each dead letter of that function into
one asset event, the handler logs an alert line (condition, error, request id), re-runs the failed execution
once with ``FcRerunAsyncTaskOperator`` (its payload, a new task id, with ``RERUN_PAYLOAD_OVERRIDE`` set over it:
the second attempt gets a short job), and records the outcome. The queue message is deleted only after Airflow
stored the asset event. The watcher needs a running scheduler and triggerer: ``make reliability`` runs this pair
against real processes (tests/reliability_long/test_dead_letter_watcher.py); ``make demo``'s ``dags test`` run
of the handler has no asset event and re-runs nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_fc_async.compat import _airflow_version

DEAD_LETTER_QUEUE = (
    "fc-dead-letters"  # dedicated: the watcher hands back what it does not want, never deletes it
)
FUNCTION = "my-fc-job-watched"
RERUN_PAYLOAD_OVERRIDE = {"work_seconds": 1}

if _airflow_version() >= (3, 0):  # event-driven scheduling; on Airflow 2 this file defines no DAG
    from airflow.providers.common.compat.sdk import DAG, task
    from airflow.sdk import Asset, AssetWatcher

    from airflow_fc_async.operators.fc import FcAsyncInvokeConfigOperator, FcInvokeAsyncOperator
    from airflow_fc_async.operators.rerun import FcRerunAsyncTaskOperator

    try:
        from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

        watcher_trigger: Any = MessageQueueTrigger(
            scheme="mns", queue_name=DEAD_LETTER_QUEUE, function_names=[FUNCTION], conditions=["Failure"]
        )
    except ImportError:  # without the common-messaging provider: the same trigger, named directly
        from airflow_fc_async.triggers.mns_events import FcDestinationEventTrigger

        watcher_trigger = FcDestinationEventTrigger(
            queue_name=DEAD_LETTER_QUEUE, function_names=[FUNCTION], conditions=["Failure"]
        )

    dead_letters = Asset(
        "fc_dead_letters", watchers=[AssetWatcher(name="fc_dead_letter_watcher", trigger=watcher_trigger)]
    )

    with DAG(
        dag_id="example_fc_dead_letter_producer",
        start_date=datetime(2024, 1, 1),
        schedule=None,
        catchup=False,
        tags=["example", "fc", "mns"],
        doc_md=__doc__,
    ) as producer_dag:
        config = FcAsyncInvokeConfigOperator(
            task_id="async_config",
            function_name=FUNCTION,
            async_task=True,
            max_async_retry_attempts=1,
            on_failure=DEAD_LETTER_QUEUE,
        )
        invoke = FcInvokeAsyncOperator(
            task_id="invoke",
            function_name=FUNCTION,
            payload={"failure": True, "batch": "{{ run_id }}"},
            wait_for_completion=False,
        )
        config >> invoke

    with DAG(
        dag_id="example_fc_dead_letter_handler",
        start_date=datetime(2024, 1, 1),
        schedule=[dead_letters],
        catchup=False,
        max_active_runs=4,
        tags=["example", "fc", "mns", "event-driven"],
        doc_md=__doc__,
    ) as handler_dag:

        @task
        def alert(**context: Any) -> list[dict[str, Any]]:
            """One alert line per dead letter of this run; the FC task to re-run for each (once per message)."""
            from airflow_fc_async.hooks.fc import FcHook

            events = [e for evs in (context.get("triggering_asset_events") or {}).values() for e in evs]
            seen: set[str] = set()
            reruns: list[dict[str, Any]] = []
            hook = FcHook()
            for event in events:
                letter = (event.extra or {}).get("payload") or {}
                if not letter.get("request_id") or letter.get("message_id") in seen:
                    continue
                seen.add(letter["message_id"])
                record = letter["record"]
                error = record["responseContext"].get("functionError") or record.get("responsePayload")
                print(
                    f"ALERT FC dead letter: function={letter['function_name']} condition={letter['condition']} "
                    f"error={error!r} request_id={letter['request_id']} message_id={letter['message_id']} "
                    f"dequeue_count={letter['dequeue_count']}"
                )
                found = next(
                    (
                        t
                        for t in hook.list_async_tasks(
                            letter["function_name"],
                            started_after=datetime.now(UTC) - timedelta(days=1),
                            limit=1000,
                        )
                        if t.request_id == letter["request_id"]
                    ),
                    None,
                )
                if found is None:
                    print(
                        f"no FC task with request id {letter['request_id']} in the last day: nothing re-run"
                    )
                    continue
                reruns.append({"function_name": letter["function_name"], "source_task_id": found.task_id})
            return reruns

        targets = alert()
        rerun = FcRerunAsyncTaskOperator.partial(
            task_id="rerun",
            payload_override=RERUN_PAYLOAD_OVERRIDE,
            poll_interval=1,
            max_wait=120,
            retries=0,
        ).expand_kwargs(targets)

        @task(trigger_rule="all_done")
        def record_outcome(results: Any) -> list[dict[str, Any]]:
            outcome = [
                {"task_id": r["task_id"], "request_id": r["request_id"], "status": r["status"]}
                for r in (results or [])
                if r
            ]
            for row in outcome:
                print(f"re-run {row['task_id']} (request id {row['request_id']}): {row['status']}")
            if not outcome:
                print("no re-run in this run")
            return outcome

        record_outcome(rerun.output)
