"""R7: after a blocking and a deferrable DAG ran with an STS connection, neither the AccessKey secret nor the
security token is anywhere: task logs, XCom, rendered fields, trigger kwargs, every table of the metadata DB,
the AIRFLOW_HOME logs folder, and what the run printed."""

from __future__ import annotations

import base64
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pendulum
import pytest

from airflow_fc_async.emulator import Emulator
from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from airflow_fc_async.triggers.fc import FcAsyncTaskTrigger
from tests.conftest import FIXTURES
from tests.e2e.conftest import run_dag, task_instance

# Made at run time: the DAG's source file is stored in the DB (dag_code), so literals here would be found there.
SECRET = "R7s" + secrets.token_hex(12)
TOKEN = "CAIS" + secrets.token_urlsafe(24)


def _forms(value: str) -> list[str]:
    """The value as it might leak: plain, URL-quoted, base64."""
    return [value, quote(value, safe=""), base64.b64encode(value.encode()).decode().rstrip("=")]


NEEDLES = {name: _forms(value) for name, value in (("secret", SECRET), ("token", TOKEN))}


def _hits(text: str) -> list[str]:
    return [f"{name}:{form}" for name, forms in NEEDLES.items() for form in forms if form in text]


@pytest.fixture
def sts_conn(airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """An emulator that requires the STS token; connection ``fc_default`` holds the secret and the token."""
    with Emulator(
        configs=[FIXTURES / "functions" / "s.yaml"],
        port=0,
        retry_delay=0.2,
        access_key_secret=SECRET,
        security_token=TOKEN,
    ) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_FC_DEFAULT", emu.connection_json())
        yield emu


def _dump_db() -> tuple[str, dict[str, int]]:
    from airflow import settings

    path = settings.engine.url.database
    assert path and Path(path).exists(), path
    rows: dict[str, int] = {}
    parts: list[str] = []
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            data = db.execute(f'SELECT * FROM "{table}"').fetchall()
            rows[table] = len(data)
            for row in data:
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        parts.append(bytes(value).decode("utf-8", "replace"))
                    else:
                        parts.append(str(value))
    return "\n".join(parts), rows


def _decrypted_trigger_kwargs() -> list[str]:
    """The trigger table's kwargs, decrypted (Airflow stores them encrypted: a dump alone could hide a leak)."""
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session

    with create_session() as session:
        return [repr(t.kwargs) for t in session.query(Trigger).all()]


def test_no_secret_and_no_token_anywhere_after_blocking_and_deferrable_runs(
    sts_conn: Emulator, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.providers.common.compat.sdk import DAG

    with DAG("rel_r7_secrets", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        FcInvokeAsyncOperator(
            task_id="blocking",
            function_name="echo",
            payload={"key": "{{ run_id }}"},
            destination_queue="fc-test-echo",
            poll_interval=1,
        )
        FcInvokeAsyncOperator(
            task_id="deferrable",
            function_name="sleeper",
            payload={"seconds": 1},
            deferrable=True,
            poll_interval=1,
        )
        FcInvokeAsyncOperator(task_id="failing", function_name="failer", payload="x", poll_interval=1)
    dr = run_dag(dag)
    printed = capsys.readouterr()
    assert task_instance(dr, "blocking").state == "success"
    assert task_instance(dr, "deferrable").state == "success"
    assert task_instance(dr, "failing").state == "failed"
    executions = sts_conn.stats()["executions"]
    assert sum(executions.values()) >= 4  # echo, sleeper, failer twice: the token was accepted

    # what was stored, read back through Airflow
    blocking = task_instance(dr, "blocking").xcom_pull(task_ids="blocking")
    assert blocking["destination_record"] is not None
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
    from airflow.utils.session import create_session

    with create_session() as session:
        rendered = [repr(r.rendered_fields) for r in session.query(RTIF).filter(RTIF.dag_id == dag.dag_id)]
    assert rendered and any(dr.run_id in r for r in rendered)  # the rendered payload is there
    triggers = _decrypted_trigger_kwargs()
    serialized = repr(FcAsyncTaskTrigger("sleeper", "t1").serialize())

    # everything on disk
    dump, rows = _dump_db()
    home = Path(__import__("os").environ["AIRFLOW_HOME"])
    log_files = [p for p in (home / "logs").rglob("*") if p.is_file()] if (home / "logs").exists() else []
    logs = "\n".join(p.read_bytes().decode("utf-8", "replace") for p in log_files)

    places = {
        "printed (stdout, stderr)": printed.out + printed.err,
        "log records": caplog.text,
        "XCom": repr(blocking),
        "rendered fields": "\n".join(rendered),
        "trigger kwargs (decrypted)": "\n".join(triggers) + serialized,
        "metadata DB dump": dump,
        "AIRFLOW_HOME logs": logs,
    }
    print(
        f"\nR7 searched: DB {len(rows)} tables / {sum(rows.values())} rows ({len(dump)} chars), "
        f"{len(log_files)} log files ({len(logs)} chars), printed {len(printed.out) + len(printed.err)} chars, "
        f"{len(triggers)} trigger rows, {len(rendered)} rendered-field rows; hits: "
        + ", ".join(f"{k}={len(_hits(v))}" for k, v in places.items())
    )
    assert blocking["task_id"] in dump  # the dump did read the run's data
    assert "Deferring" in printed.out  # the deferrable path ran
    for place, text in places.items():
        assert _hits(text) == [], f"{place}: {_context(text)}"


def _context(text: str) -> list[str]:
    """Where each hit sits (to find the leak), the needle itself masked."""
    out = []
    for forms in NEEDLES.values():
        for form in forms:
            at = text.find(form)
            if at >= 0:
                out.append(text[max(0, at - 300) : at].replace("\n", " ") + "<HIT>")
    return out


def test_the_needles_would_be_found() -> None:
    """The search itself works: a planted secret is found in each form."""
    for value in (SECRET, TOKEN):
        for form in _forms(value):
            assert _hits(f"xx{form}yy")
    assert _hits("nothing here") == []
