"""Every topic name and filter on the bus, built in one place.

Topics (``prefix`` is ``patrol/v1`` by default; ``mqtt.topic_prefix`` in a site file)::

    {prefix}/incidents/{type}/{camera}     incident events, QoS 1, JSON (core/schema)
    {prefix}/availability/{client}         "online" / "offline", retained, last will
    {prefix}/health/{camera}               {"camera_id","state":"online"|"offline","at",...}, retained
    {prefix}/verify/request/{camera}       ticket service -> verifier
    {prefix}/verify/result/{camera}        verifier -> ticket service
    {prefix}/verdicts/{camera}             an operator's verdict from the review page
    {prefix}/replay/request                {"since": unix time}: consumer -> every pipeline's outbox

Shared subscriptions (``$share/{group}/{filter}``, MQTT v5) spread one filter's messages over the
members of a group, each message to one member: ``tickets`` for the ticket services, ``verifiers``
for the verifiers. :func:`matches` is the MQTT filter rule the in-memory transport routes with
(paho has one too, but paho stays inside ``alerts/mqtt.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "patrol/v1"
TICKETS_GROUP = "tickets"
"""Shared-subscription group of the ticket services (incidents and verify results)."""
VERIFIERS_GROUP = "verifiers"
"""Shared-subscription group of the verifiers (verify requests)."""
SHARE_HEAD = "$share/"


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or self.prefix.endswith("/") or any(c in self.prefix for c in "+#"):
            raise ValueError(f"topic prefix {self.prefix!r}: needs a non-empty topic without wildcards "
                             "or a trailing '/' (e.g. 'patrol/v1')")

    def incident(self, incident_type: str, camera_id: str) -> str:
        return f"{self.prefix}/incidents/{incident_type}/{camera_id}"

    @property
    def incidents(self) -> str:
        """Filter: every incident event."""
        return f"{self.prefix}/incidents/#"

    def availability(self, client_id: str) -> str:
        return f"{self.prefix}/availability/{client_id}"

    def health(self, camera_id: str = "+") -> str:
        return f"{self.prefix}/health/{camera_id}"

    def verify_request(self, camera_id: str = "+") -> str:
        return f"{self.prefix}/verify/request/{camera_id}"

    def verify_result(self, camera_id: str = "+") -> str:
        return f"{self.prefix}/verify/result/{camera_id}"

    def verdict(self, camera_id: str = "+") -> str:
        return f"{self.prefix}/verdicts/{camera_id}"

    @property
    def replay_request(self) -> str:
        return f"{self.prefix}/replay/request"

    @staticmethod
    def shared(topic_filter: str, group: str = TICKETS_GROUP) -> str:
        """The shared subscription of ``group`` to ``topic_filter``."""
        if not group or any(c in group for c in "/+#"):
            raise ValueError(f"shared subscription group {group!r}: needs a name without '/', '+' or '#'")
        return f"{SHARE_HEAD}{group}/{topic_filter}"

    def parse_incident(self, topic: str) -> tuple[str, str] | None:
        """(type, camera) of an incident topic, None for any other topic."""
        head = f"{self.prefix}/incidents/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head):].split("/")
        return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None

    def is_verify_result(self, topic: str) -> bool:
        return matches(self.verify_result(), topic)


def split_shared(subscription: str) -> tuple[str | None, str]:
    """(group, filter) of a subscription: ``$share/g/a/#`` -> ("g", "a/#"), ``a/#`` -> (None, "a/#")."""
    if not subscription.startswith(SHARE_HEAD):
        return None, subscription
    group, sep, topic_filter = subscription[len(SHARE_HEAD):].partition("/")
    if not group or not sep or not topic_filter:
        raise ValueError(f"shared subscription {subscription!r}: expected $share/GROUP/FILTER")
    return group, topic_filter


def matches(topic_filter: str, topic: str) -> bool:
    """Does ``topic`` match the MQTT filter (``+`` one level, ``#`` the rest, MQTT v5 section 4.7)?

    A topic starting with ``$`` is not matched by a filter starting with a wildcard (section 4.7.2).
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    want, have = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(want):
        if part == "#":
            return i == len(want) - 1
        if i >= len(have) or (part != "+" and part != have[i]):
            return False
    return len(want) == len(have)
