"""MNS as a common-messaging queue: ``MessageQueueTrigger(scheme="mns", queue_name="fc-dlq", ...)``.

Registered under ``queues`` in the provider info (Airflow 3 only). The keyword arguments are those of
:class:`~airflow_fc_async.triggers.mns_events.FcDestinationEventTrigger`; the deprecated URI form
``MessageQueueTrigger(queue="mns://fc-dlq")`` works too.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from airflow_fc_async.compat import require_event_driven_scheduling

require_event_driven_scheduling(__name__)

try:
    from airflow.providers.common.messaging.providers.base_provider import BaseMessageQueueProvider
except ImportError as err:  # pragma: no cover - depends on the installed providers
    from airflow.exceptions import AirflowOptionalProviderFeatureException

    raise AirflowOptionalProviderFeatureException(
        "MNS as a MessageQueueTrigger queue needs apache-airflow-providers-common-messaging >= 2.0 "
        "(pip install 'airflow-fc-async[messaging]')"
    ) from err

if TYPE_CHECKING:
    from airflow.triggers.base import BaseEventTrigger

__all__ = ["QUEUE_REGEXP", "MnsMessageQueueProvider"]

QUEUE_REGEXP = r"^mns://(?P<queue>[A-Za-z0-9][A-Za-z0-9-]{0,255})$"


class MnsMessageQueueProvider(BaseMessageQueueProvider):
    """``scheme="mns"`` dispatches to :class:`~airflow_fc_async.triggers.mns_events.FcDestinationEventTrigger`."""

    scheme = "mns"

    def queue_matches(self, queue: str) -> bool:
        return bool(re.match(QUEUE_REGEXP, queue))

    def trigger_class(self) -> type[BaseEventTrigger]:
        from airflow_fc_async.triggers.mns_events import FcDestinationEventTrigger

        return FcDestinationEventTrigger

    def trigger_kwargs(self, queue: str, **kwargs: Any) -> dict[str, Any]:
        match = re.match(QUEUE_REGEXP, queue)
        if match is None:
            raise ValueError(f"queue: expected mns://<queue name>, got {queue!r}")
        return {"queue_name": match.group("queue")}
