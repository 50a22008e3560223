"""A batch pipeline: one deferrable async invocation per document, results gathered downstream.

The documents come from an upstream task; `FcInvokeAsyncOperator.partial(...).expand(payload=...)` maps one FC async
task over each. While they run, the waiting happens in the triggerer, not in worker slots. The last task sums the
word counts from the XCom results (`return_payload` is the function's JSON result, already parsed).
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, task

from airflow_fc_async.operators.fc import FcInvokeAsyncOperator

with DAG(
    dag_id="example_fc_batch",
    start_date=datetime(2024, 1, 1),
    schedule=None,
    catchup=False,
    tags=["example", "fc"],
    doc_md=__doc__,
):

    @task
    def documents() -> list[dict[str, object]]:
        words = "the quick brown fox jumps over the lazy dog "
        return [{"name": f"doc-{i}", "text": words * (i + 1), "extra_seconds": i % 3} for i in range(5)]

    counts = FcInvokeAsyncOperator.partial(
        task_id="count_words",
        function_name="batch-job",
        deferrable=True,
        poll_interval=2,
        max_wait=300,
    ).expand(payload=documents())

    @task
    def total(results: list[dict[str, object]]) -> dict[str, object]:
        per_doc = {r["return_payload"]["name"]: r["return_payload"]["words"] for r in results}  # type: ignore[index]
        print(f"word counts: {per_doc}")
        return {"documents": len(per_doc), "words": sum(per_doc.values())}

    total(counts.output)  # type: ignore[arg-type]
