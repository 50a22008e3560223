"""The Emulator: wires settings, functions, queues, runtime and HTTP server; the Python API tests use."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.endpoints import parse_mns_queue_arn
from airflow_fc_async.emulator.admin import Admin, spec_from_json
from airflow_fc_async.emulator.config import FunctionSpec, destination_queues, load_config
from airflow_fc_async.emulator.console import Console
from airflow_fc_async.emulator.faults import DESTINATION_ACTION
from airflow_fc_async.emulator.fc_api import FcApi
from airflow_fc_async.emulator.mns_api import MnsApi
from airflow_fc_async.emulator.mns_store import QueueStore
from airflow_fc_async.emulator.runtime import Runtime
from airflow_fc_async.emulator.scheduler import Scheduler
from airflow_fc_async.emulator.server import HttpServer, Router
from airflow_fc_async.emulator.settings import (
    ADMIN_TOKEN_HEADER,
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    Settings,
)
from airflow_fc_async.emulator.sls_api import LogStore, SlsApi
from airflow_fc_async.emulator.wire import ApiError

__all__ = ["Emulator"]


class Emulator:
    """A local FC 3.0 + MNS server. ``with Emulator(configs=["s.yaml"], port=0) as emu: emu.endpoint``."""

    def __init__(
        self,
        configs: Iterable[str | os.PathLike[str]] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        account_id: str | None = None,
        region: str | None = None,
        access_key_id: str = DEFAULT_ACCESS_KEY_ID,
        access_key_secret: str = DEFAULT_ACCESS_KEY_SECRET,
        security_token: str | None = None,
        settings: Settings | None = None,
        **options: Any,
    ) -> None:
        self.settings = settings or Settings(
            host=host,
            port=port,
            access_key_id=access_key_id,
            access_key_secret=access_key_secret,
            security_token=security_token,
            **options,
        )
        if account_id:
            self.settings.account_id = account_id
        if region:
            self.settings.region = region
        self.queues = QueueStore()
        self.runtime = Runtime()
        self.scheduler = Scheduler(self.settings, self.runtime, self._deliver)
        self._admin = Admin(self)
        self.router = Router(
            self.settings,
            FcApi(self.scheduler),
            MnsApi(self.queues, self._queue_url),
            self._admin,
            lambda: self.endpoint,
        )
        self.log_store = LogStore()
        self.scheduler.function_logs.sink = self.log_store.append
        self.router.console = Console(self.settings, self.scheduler, self.logs)
        self.router.sls = SlsApi(self.log_store, self._log_configs, self.scheduler.function_logs.ship_logs)
        self._server: HttpServer | None = None
        self._thread: threading.Thread | None = None
        for path in configs:
            self.load_config(path)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> Emulator:
        if self._server is None:
            self._server = HttpServer((self.settings.host, self.settings.port), self.router)
            self.settings.port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name="fc-emulator-http",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake long polls and kill every running function process."""
        self.scheduler.shutdown()
        self.queues.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def serve_forever(self) -> None:
        """Block the calling thread until stop() (the CLI's loop)."""
        self.start()
        assert self._thread is not None
        while self._thread.is_alive():
            self._thread.join(0.5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- functions ------------------------------------------------------------------------------------------
    def load_config(self, path: str | os.PathLike[str]) -> list[FunctionSpec]:
        specs = load_config(path)
        for spec in specs:
            self.deploy_spec(spec)
        return specs

    def deploy_spec(self, spec: FunctionSpec) -> None:
        for queue in destination_queues(spec):
            self.queues.ensure(queue)
        self.scheduler.deploy(spec)

    def deploy(
        self,
        name: str,
        *,
        handler: str = "index.handler",
        code_dir: str | os.PathLike[str] | None = None,
        source: str | None = None,
        **props: Any,
    ) -> FunctionSpec:
        """Deploy (or replace) a function: ``code_dir`` or inline ``source``; ``props`` as the admin endpoint."""
        raw = {
            "name": name,
            "handler": handler,
            "code_dir": str(code_dir) if code_dir else None,
            "source": source,
            **props,
        }
        spec = spec_from_json(raw, self._admin.workdir, confine=False)
        self.deploy_spec(spec)
        return spec

    # -- introspection --------------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    @property
    def admin_token(self) -> str:
        """The per-start secret every /_emulator/ request carries in the ``x-emulator-admin-token`` header."""
        return self.settings.admin_token

    def admin_headers(self) -> dict[str, str]:
        """Headers for an /_emulator/ request: the admin token and the JSON content type."""
        return {ADMIN_TOKEN_HEADER: self.settings.admin_token, "content-type": "application/json"}

    @property
    def account_id(self) -> str:
        return self.settings.account_id

    @property
    def region(self) -> str:
        return self.settings.region

    @property
    def credentials(self) -> Credentials:
        s = self.settings
        return Credentials(s.access_key_id, s.access_key_secret, s.security_token)

    def connection_extra(self) -> dict[str, str]:
        s = self.settings
        extra = {
            "access_key_id": s.access_key_id,
            "access_key_secret": s.access_key_secret,
            "region": s.region,
            "account_id": s.account_id,
            "fc_endpoint": self.endpoint,
            "mns_endpoint": self.endpoint,
            "sls_endpoint": self.endpoint,
        }
        if s.security_token:
            extra["security_token"] = s.security_token
        return extra

    def connection_json(self) -> str:
        """The value of ``AIRFLOW_CONN_FC_DEFAULT`` (JSON form)."""
        return json.dumps({"conn_type": "alibaba_fc", "extra": self.connection_extra()})

    @property
    def connection_uri(self) -> str:
        """The same connection in Airflow's URI form."""
        return "alibaba-fc://?__extra__=" + quote(json.dumps(self.connection_extra()), safe="")

    def ready_line(self) -> str:
        return (
            f"fc-emulator ready: endpoint {self.endpoint} (FC, MNS, SLS), account {self.account_id}, region "
            f"{self.region}, admin token {self.admin_token} (header {ADMIN_TOKEN_HEADER}); "
            f"export AIRFLOW_CONN_FC_DEFAULT='{self.connection_json()}'"
        )

    def stats(self) -> dict[str, Any]:
        out = self.router.stats.to_json()
        out["executions"] = dict(self.scheduler.executions)
        out["tasks"] = dict(self.scheduler.counts())
        out["faults"] = dict(self.router.faults.injected)
        out["records_built"] = self.scheduler.records_built
        out["cpu_seconds"] = round(time.process_time(), 3)  # this process: a slow server shows as such
        return out

    def reset_stats(self) -> None:
        self.router.stats.reset()
        self.scheduler.reset_stats()
        self.router.faults.injected.clear()

    def inject_faults(self, rules: list[dict[str, Any]] | None = None, *, seed: int = 0, **rule: Any) -> None:
        """Replace the fault rules: a list of rule dicts, or one rule as keywords (see faults.FaultRule)."""
        self.router.faults.set(list(rules or []) + ([rule] if rule else []), seed)

    def clear_faults(self) -> None:
        self.router.faults.clear()

    def logs(self, request_id: str) -> str:
        """Everything the function printed (stdout and stderr) for one request id, across attempts."""
        return self.scheduler.logs(request_id)

    def _log_configs(self) -> list[tuple[str, str]]:
        """The (project, logstore) pairs the deployed functions' logConfig name: what GetLogs serves."""
        pairs = []
        for name in self.scheduler.function_names():
            config = self.scheduler.function(name).spec.log_config
            if config:
                pairs.append((config["project"], config["logstore"]))
        return pairs

    # -- destinations ---------------------------------------------------------------------------------------
    def _queue_url(self, name: str) -> str:
        return f"{self.endpoint}/queues/{name}"

    def _deliver(self, arn: str, body: str) -> str | None:
        parsed = parse_mns_queue_arn(arn)
        if parsed is None:
            return f"destination {arn} is not an MNS queue (the emulator delivers to MNS queues only)"
        fault = self.router.faults.decide(DESTINATION_ACTION, arn)
        if fault.kind == "drop":
            return None  # lost on its way: FC believes it delivered
        if fault.kind is not None:
            return f"injected fault: HTTP {fault.kind} from MNS"
        if fault.latency > 0:  # a late record; the scheduler holds its lock here, so no sleep
            timer = threading.Timer(fault.latency, self._send_quietly, (parsed[2], body))
            timer.daemon = True
            timer.start()
            return None
        try:
            self.queues.send(parsed[2], body)
        except ApiError as err:
            return f"{err.code}: {err.message}"
        return None

    def _send_quietly(self, queue: str, body: str) -> None:
        with contextlib.suppress(ApiError):
            self.queues.send(queue, body)
