"""Airflow connection -> endpoints, credentials and timeouts; shared by :class:`FcHook` and :class:`MnsHook`.

:func:`resolve_connection` is pure (a conn id, a type, login, password and the extras in, settings out) so the
rules are tested without a metadata database. The hooks read the connection lazily, on first use: never in
``__init__`` (a DAG file builds operators every few seconds) and never with sync I/O on an event loop.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.providers.common.compat.sdk import BaseHook

from airflow_fc_async import compat
from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.endpoints import fc_host, mns_host
from airflow_fc_async.core.errors import FcValidationError

if TYPE_CHECKING:
    from airflow_fc_async.core.http import RetryPolicy

__all__ = ["SUPPORTED_CONN_TYPES", "ConnectionSettings", "FcBaseHook", "resolve_connection"]

log = logging.getLogger(__name__)

T = TypeVar("T")

SUPPORTED_CONN_TYPES = ("alibaba_fc", "alibaba_cloud")
_DEFAULT_CONNECT_TIMEOUT = 5.0
_DEFAULT_READ_TIMEOUT = 60.0
_READING: dict[tuple[int, str, type], asyncio.Task[ConnectionSettings]] = {}
"""Connection reads in flight per (loop, conn id, hook class): concurrent readers share one (nothing is kept)."""


@dataclass(frozen=True)
class ConnectionSettings:
    """What a connection says. Endpoints are None when neither an override nor region + account id give one."""

    conn_id: str
    credentials: Credentials
    region: str | None
    account_id: str | None
    fc_endpoint: str | None
    mns_endpoint: str | None
    sls_endpoint: str | None
    connect_timeout: float | None = None
    read_timeout: float | None = None
    #: The services whose endpoint came from an override extra (``fc``, ``mns``, ``sls``).
    overrides: frozenset[str] = frozenset()

    def endpoint(self, service: str) -> str:
        """``scheme://host[:port]`` of ``fc``, ``mns`` or ``sls``, or an error naming what the connection lacks."""
        value = {"fc": self.fc_endpoint, "mns": self.mns_endpoint, "sls": self.sls_endpoint}[service]
        if value:
            return value
        missing = [name for name in ("region", "account_id") if not getattr(self, name)]
        raise FcValidationError(
            missing[0] if missing else f"{service}_endpoint",
            f"connection {self.conn_id!r} has no {' and no '.join(missing) or service + ' endpoint'}: set the extra "
            f"{' and '.join(repr(m) for m in missing)} (or {service + '_endpoint'!r} to point at another endpoint)",
        )


def _extra(extra: Mapping[str, Any], conn_type: str, key: str) -> Any:
    """An extra by its plain name, or by the ``extra__<type>__<name>`` name of Airflow 2 forms."""
    value = extra.get(key)
    if value in (None, ""):
        value = extra.get(f"extra__{conn_type}__{key}")
    return None if value in (None, "") else value


def _timeout(conn_id: str, key: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise FcValidationError(
            key, f"connection {conn_id!r}: extra {key!r} must be a number, got {value!r}"
        ) from None
    if seconds <= 0:
        raise FcValidationError(key, f"connection {conn_id!r}: extra {key!r} must be positive, got {value!r}")
    return seconds


def resolve_connection(
    conn_id: str,
    *,
    conn_type: str | None,
    login: str | None,
    password: str | None,
    extra: Mapping[str, Any] | None,
) -> ConnectionSettings:
    """Credentials from extras ``access_key_id``/``access_key_secret`` (else login/password), ``security_token``;
    ``region`` and ``account_id``; ``fc_endpoint``/``mns_endpoint``/``sls_endpoint`` replace scheme://host:port."""
    from airflow_fc_async.core.http import BaseUrl  # cheap, but keeps this module's own imports minimal

    extra = extra or {}
    ctype = conn_type or "alibaba_fc"
    if conn_type and conn_type.replace("-", "_") not in SUPPORTED_CONN_TYPES:
        log.warning("connection %r has type %r; expected one of %s", conn_id, conn_type, SUPPORTED_CONN_TYPES)
    key_id = _extra(extra, ctype, "access_key_id") or login
    secret = _extra(extra, ctype, "access_key_secret") or password
    if not key_id:
        raise FcValidationError(
            "access_key_id",
            f"connection {conn_id!r} has no access key id: set extra 'access_key_id' or login",
        )
    if not secret:
        raise FcValidationError(
            "access_key_secret",
            f"connection {conn_id!r} has no access key secret: set extra 'access_key_secret' or password",
        )
    credentials = Credentials(str(key_id), str(secret), _extra(extra, ctype, "security_token") or None)
    region = _extra(extra, ctype, "region")
    account_id = _extra(extra, ctype, "account_id")
    region = str(region) if region is not None else None
    account_id = str(account_id) if account_id is not None else None

    def endpoint(service: str, default_host: str | None) -> str | None:
        override = _extra(extra, ctype, f"{service}_endpoint")
        if override is not None:
            try:
                return BaseUrl.parse(str(override), f"{service}_endpoint").url
            except FcValidationError as exc:
                raise FcValidationError(exc.field, f"connection {conn_id!r}: {exc.problem}") from None
        return f"https://{default_host}" if default_host else None

    fc_default = fc_host(account_id, region) if region and account_id else None
    mns_default = mns_host(account_id, region) if region and account_id else None
    overrides = frozenset(
        s for s in ("fc", "mns", "sls") if _extra(extra, ctype, f"{s}_endpoint") is not None
    )
    return ConnectionSettings(
        conn_id=conn_id,
        credentials=credentials,
        region=region,
        account_id=account_id,
        fc_endpoint=endpoint("fc", fc_default),
        mns_endpoint=endpoint("mns", mns_default),
        sls_endpoint=endpoint("sls", f"{region}.log.aliyuncs.com" if region else None),
        connect_timeout=_timeout(conn_id, "connect_timeout", _extra(extra, ctype, "connect_timeout")),
        read_timeout=_timeout(conn_id, "read_timeout", _extra(extra, ctype, "read_timeout")),
        overrides=overrides,
    )


def _load(path: str) -> Any:
    """The class at ``path``: ``module:Class``, the module one of ``airflow_fc_async.core``."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(f"airflow_fc_async.core.{module}"), name)


class FcBaseHook(BaseHook):
    """Connection handling shared by the FC and MNS hooks.

    :param fc_conn_id: an ``alibaba_fc`` (or ``alibaba_cloud``) connection.
    :param connect_timeout: seconds to open a connection (default: extra ``connect_timeout``, else 5).
    :param read_timeout: seconds to wait for a reply (default: extra ``read_timeout``, else 60).
    :param retry: the retry policy of every call (default: 4 attempts, capped exponential backoff).
    """

    conn_name_attr = "fc_conn_id"
    default_conn_name = "fc_default"
    conn_type = "alibaba_fc"
    hook_name = "Alibaba Cloud Function Compute"

    def __init__(
        self,
        fc_conn_id: str = default_conn_name,
        *,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fc_conn_id = fc_conn_id
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self.retry = retry
        self._settings: ConnectionSettings | None = None
        # one lock per event loop: an asyncio.Lock binds to the loop it is first contended on, and a hook may be
        # used from several loops (tests, asyncio.run per call)
        self._alocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fc_conn_id={self.fc_conn_id!r})"

    # -- the connection ---------------------------------------------------------------------------------------
    def settings(self) -> ConnectionSettings:
        """The connection's settings (read once, synchronously: not for an event loop, see :meth:`asettings`)."""
        if self._settings is None:
            conn = self.get_connection(self.fc_conn_id)
            self._settings = resolve_connection(
                self.fc_conn_id,
                conn_type=conn.conn_type,
                login=conn.login,
                password=conn.password,
                extra=conn.extra_dejson,
            )
        return self._settings

    async def asettings(self) -> ConnectionSettings:
        """The settings, read without blocking the event loop (triggers). Hooks of one loop that ask for the same
        connection at the same time share one read: a triggerer starting a thousand triggers makes one lookup,
        not a thousand (5 ms of the loop each here; a round trip to the supervisor each in a triggerer)."""
        if self._settings is None:
            loop = asyncio.get_running_loop()
            key = (id(loop), self.fc_conn_id, type(self))
            reading = _READING.get(key)
            if reading is None or reading.get_loop() is not loop:
                reading = _READING[key] = loop.create_task(self._read_settings())
                reading.add_done_callback(
                    lambda done: _READING.pop(key, None) if _READING.get(key) is done else None
                )
            self._settings = await asyncio.shield(reading)
        return self._settings

    async def _abuild_once(self, attr: str, build: Callable[[ConnectionSettings], T]) -> T:
        """The async client cached in ``attr``, built once even when many coroutines ask at the same moment.

        Without the lock, each caller awaiting the connection read between the ``is None`` check and the
        assignment built its own client (an aiohttp session nobody closes).
        """
        value: T | None = getattr(self, attr)
        if value is not None:
            return value
        loop = asyncio.get_running_loop()
        lock = self._alocks.get(loop)
        if lock is None:
            lock = self._alocks[loop] = asyncio.Lock()
        async with lock:
            value = getattr(self, attr)
            if value is None:
                value = build(await self.asettings())
                setattr(self, attr, value)
        return value

    async def _read_settings(self) -> ConnectionSettings:
        conn, extra = await compat.aget_connection(self.fc_conn_id, hook=type(self))
        return resolve_connection(
            self.fc_conn_id,
            conn_type=conn.conn_type,
            login=conn.login,
            password=conn.password,
            extra=extra,
        )

    @property
    def region(self) -> str | None:
        return self.settings().region

    @property
    def account_id(self) -> str | None:
        return self.settings().account_id

    def _new_client(
        self, cls: Callable[..., T], service: str, settings: ConnectionSettings | None = None
    ) -> T:
        """A client of ``cls`` for ``service`` (``fc``, ``mns``, ``sls``) from the connection's settings."""
        s = settings or self.settings()
        return cls(s.endpoint(service), s.credentials, **self._client_kwargs(s))

    def _cached_client(self, attr: str, path: str, service: str) -> Any:
        """The sync client cached in ``attr``, built on first use from the class at ``path`` (``module:Class`` of
        ``core``, imported only then: HTTP libraries load when a client is first needed)."""
        client = getattr(self, attr)
        if client is None:
            client = self._new_client(_load(path), service)
            setattr(self, attr, client)
        return client

    async def _acached_client(self, attr: str, path: str, service: str) -> Any:
        """The async twin of :meth:`_cached_client`, built once (see :meth:`_abuild_once`)."""
        client = getattr(self, attr)
        if client is not None:
            return client
        cls = _load(path)
        return await self._abuild_once(attr, lambda s: self._new_client(cls, service, s))

    def _close_clients(self, *attrs: str) -> None:
        for attr in attrs:
            client = getattr(self, attr)
            if client is not None:
                client.close()
                setattr(self, attr, None)

    async def _aclose_clients(self, *attrs: str) -> None:
        for attr in attrs:
            client = getattr(self, attr)
            if client is not None:
                await client.aclose()
                setattr(self, attr, None)

    def _client_kwargs(self, settings: ConnectionSettings) -> dict[str, Any]:
        return {
            "connect_timeout": self._connect_timeout or settings.connect_timeout or _DEFAULT_CONNECT_TIMEOUT,
            "read_timeout": self._read_timeout or settings.read_timeout or _DEFAULT_READ_TIMEOUT,
            "retry": self.retry,
        }

    # -- Airflow 2.x connection form (3.2+ reads conn-fields from get_provider_info instead) --------------------
    @staticmethod
    def _ui_field_behaviour() -> dict[str, Any]:
        return {"hidden_fields": ["schema", "port", "host", "login", "password"], "relabeling": {}}

    @staticmethod
    def _form_widgets() -> dict[str, Any]:
        return compat.connection_form_widgets(
            {
                "access_key_id": "Access Key ID",
                "access_key_secret": "Access Key Secret",
                "security_token": "Security Token",
                "region": "Region",
                "account_id": "Account ID",
                "fc_endpoint": "FC endpoint",
                "mns_endpoint": "MNS endpoint",
                "sls_endpoint": "SLS endpoint",
            },
            secrets=("access_key_secret", "security_token"),
        )
