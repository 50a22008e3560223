"""FcAsyncInvokeConfigOperator: a function's async invoke config (retries, event age, destinations) as code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_fc_async.core.models import AsyncInvokeConfig
    from airflow_fc_async.hooks.fc import FcHook

__all__ = ["FcAsyncInvokeConfigOperator"]

# What FC applies for a field that a PutAsyncInvokeConfig leaves out (the call replaces the whole config).
FC_DEFAULTS: dict[str, Any] = {"max_async_retry_attempts": 3, "max_async_event_age_in_seconds": 86400}


class FcAsyncInvokeConfigOperator(BaseOperator):
    """Put (or delete) the async invoke config of a function, idempotently.

    :param function_name: the function (templated).
    :param qualifier: ``LATEST``, a version or an alias (templated).
    :param async_task: keep task records (required for GetAsyncTask/ListAsyncTasks to find anything).
    :param max_async_retry_attempts: 0-8 retries of a function error (FC's default 3 when None).
    :param max_async_event_age_in_seconds: 1-2592000; older events expire (FC's default 86400 when None).
    :param on_success: destination ARN, or an MNS queue name expanded to the queue ARN of the connection's
        region and account (templated).
    :param on_failure: as ``on_success``, for failed, expired and stopped tasks (templated).
    :param delete: delete the config instead of putting it.
    :param fc_conn_id: the ``alibaba_fc`` connection.

    No write is made when the current config already matches; when it changes, the difference is logged.
    The XCom return value is the resulting config's settings (None after a delete).
    """

    template_fields: Sequence[str] = ("function_name", "qualifier", "on_success", "on_failure")
    ui_color = "#ff9a3c"

    def __init__(
        self,
        *,
        function_name: str,
        qualifier: str = "LATEST",
        async_task: bool = True,
        max_async_retry_attempts: int | None = None,
        max_async_event_age_in_seconds: int | None = None,
        on_success: str | None = None,
        on_failure: str | None = None,
        delete: bool = False,
        fc_conn_id: str = "fc_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(async_task, bool):
            raise ValueError(f"async_task must be True or False, got {async_task!r}")
        if max_async_retry_attempts is not None or max_async_event_age_in_seconds is not None:
            from airflow_fc_async.core.validation import check_int_range  # loads the models: only when needed

            if max_async_retry_attempts is not None:
                check_int_range("max_async_retry_attempts", max_async_retry_attempts, 0, 8)
            if max_async_event_age_in_seconds is not None:
                check_int_range(
                    "max_async_event_age_in_seconds", max_async_event_age_in_seconds, 1, 2_592_000
                )
        self.function_name = function_name
        self.qualifier = qualifier
        self.async_task = async_task
        self.max_async_retry_attempts = max_async_retry_attempts
        self.max_async_event_age_in_seconds = max_async_event_age_in_seconds
        self.on_success = on_success
        self.on_failure = on_failure
        self.delete = delete
        self.fc_conn_id = fc_conn_id

    def execute(self, context: Context) -> dict[str, Any] | None:
        from airflow_fc_async.core.errors import FcError
        from airflow_fc_async.hooks.fc import FcHook
        from airflow_fc_async.operators.outcome import airflow_error

        hook = FcHook(fc_conn_id=self.fc_conn_id)
        try:
            return self._apply(hook)
        except FcError as err:
            raise airflow_error(err, f"Setting the async invoke config of {self.function_name}") from err

    def _apply(self, hook: FcHook) -> dict[str, Any] | None:
        from airflow_fc_async.core.models import AsyncInvokeConfig
        from airflow_fc_async.core.validation import (
            check_async_invoke_config,
            check_function_name,
            check_qualifier,
        )

        fn = check_function_name(self.function_name)
        qualifier = check_qualifier(self.qualifier)
        current = hook.get_async_invoke_config(fn, qualifier=qualifier)
        if self.delete:
            if current is None:
                self.log.info("%s (%s) has no async invoke config: nothing to delete", fn, qualifier)
            else:
                hook.delete_async_invoke_config(fn, qualifier=qualifier)
                self.log.info(
                    "Deleted the async invoke config of %s (%s): was %s", fn, qualifier, current.settings()
                )
            return None
        wanted = check_async_invoke_config(
            AsyncInvokeConfig(
                async_task=self.async_task,
                max_async_retry_attempts=self.max_async_retry_attempts,
                max_async_event_age_in_seconds=self.max_async_event_age_in_seconds,
                on_success=self._destination(hook, self.on_success),
                on_failure=self._destination(hook, self.on_failure),
            )
        )
        changes = config_diff(current, wanted)
        if current is not None and not changes:
            self.log.info("The async invoke config of %s (%s) already matches: no write", fn, qualifier)
            return effective(wanted)
        for field, (old, new) in changes.items():
            self.log.info("  %s: %r -> %r", field, old, new)
        hook.put_async_invoke_config(
            fn,
            qualifier=qualifier,
            async_task=wanted.async_task if wanted.async_task is not None else True,
            max_async_retry_attempts=wanted.max_async_retry_attempts,
            max_async_event_age_in_seconds=wanted.max_async_event_age_in_seconds,
            on_success=wanted.on_success,
            on_failure=wanted.on_failure,
        )
        self.log.info(
            "%s the async invoke config of %s (%s)",
            "Created" if current is None else "Updated",
            fn,
            qualifier,
        )
        return effective(wanted)

    @staticmethod
    def _destination(hook: FcHook, value: str | None) -> str | None:
        from airflow_fc_async.core.endpoints import destination_arn
        from airflow_fc_async.core.errors import FcValidationError
        from airflow_fc_async.core.validation import check_queue_name

        if not value:
            return None
        if value.startswith("acs:"):
            return value
        check_queue_name(value, "destination queue")
        if not hook.region or not hook.account_id:
            raise FcValidationError(
                "on_success/on_failure",
                f"the queue name {value!r} needs the connection's region and account_id to become an ARN",
            )
        return destination_arn(value, hook.region, hook.account_id)


def effective(config: AsyncInvokeConfig) -> dict[str, Any]:
    """The settings FC holds after a put of ``config``: FC's defaults filled in for fields left out."""
    settings = config.settings()
    for field, default in FC_DEFAULTS.items():
        if settings[field] is None:
            settings[field] = default
    settings["async_task"] = bool(settings["async_task"])
    return settings


def config_diff(current: AsyncInvokeConfig | None, wanted: AsyncInvokeConfig) -> dict[str, tuple[Any, Any]]:
    """``{field: (now, after the put)}`` for each field a put of ``wanted`` would change."""
    after = effective(wanted)
    now = effective(current) if current is not None else dict.fromkeys(after)
    return {k: (now[k], after[k]) for k in after if now[k] != after[k]}
