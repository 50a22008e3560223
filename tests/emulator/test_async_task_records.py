"""FC keeps task records only with ``asyncTask: true`` (FC's async task documentation): the emulator accepts and
runs the invoke, and GetAsyncTask answers 404, as FC does."""

from __future__ import annotations

import pytest

from airflow_fc_async.core.errors import FcNotFoundError
from tests.emulator.conftest import unique, wait_for

SOURCE = "def handler(event, context):\n    return 'ran'\n"


@pytest.mark.parametrize("config", [None, {"maxAsyncRetryAttempts": 0}], ids=["no_config", "no_async_task"])
def test_without_async_task_the_invoke_is_accepted_and_runs_but_has_no_record(fc, emu, config) -> None:
    name = unique("norecords")
    emu.deploy(name, source=SOURCE, **({"async_invoke_config": config} if config else {}))
    inv = fc.invoke_async(name, {}, task_id=unique("t"))
    assert inv.request_id  # 202: accepted
    wait_for(lambda: emu.stats()["executions"].get(inv.task_id, 0) == 1)  # and run
    with pytest.raises(FcNotFoundError):
        fc.get_async_task(name, inv.task_id)
    cfg = fc.get_async_invoke_config(name)
    assert cfg is None or cfg.async_task is not True
