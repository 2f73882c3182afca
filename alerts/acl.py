"""Broker authorization: one mosquitto ACL section per role, built from the topic names.

Every connection on the bus is one of four roles (``camera_config.schema.MqttRole``), each with
its own broker account (``mqtt.accounts`` in the site file) and only the topics its work needs:

=========  ==========================================  ==========================================
role       may publish                                 may subscribe
=========  ==========================================  ==========================================
pipeline   incidents, health, availability             replay requests
tickets    verify requests, replay requests,           incidents, verify results, health
           availability
verifier   verify results, availability                verify requests
review     verdicts, availability                      health
=========  ==========================================  ==========================================

So a review-page account cannot forge an incident, a ``closed`` event or a verify result, and no
account but the ticket service's can ask every pipeline to re-send its history. mosquitto refuses
the rest: an MQTT v5 publish outside the ACL is answered with reason code 135 (not authorized) and
reaches no subscriber. ``patrol broker acl --config SITE`` writes the file (``acl_file`` in
mosquitto.conf, beside ``password_file``); scripts/services.py's test broker takes the same text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

from camera_config.schema import MqttConfig, MqttRole
from core.errors import ConfigError
from core.topics import Topics

Access = Literal["read", "write", "readwrite"]

ROLES: tuple[MqttRole, ...] = get_args(MqttRole)


def role_rules(role: MqttRole, topics: Topics) -> list[tuple[Access, str]]:
    """(access, topic filter) pairs ``role`` is allowed; everything else is denied."""
    own_availability: tuple[Access, str] = ("write", topics.availability("#"))
    rules: dict[MqttRole, list[tuple[Access, str]]] = {
        "pipeline": [("write", topics.incidents), ("write", topics.health("#")), own_availability,
                     ("read", topics.replay_request)],
        "tickets": [("read", topics.incidents), ("read", topics.verify_result("#")),
                    ("read", topics.health("#")), ("write", topics.verify_request("#")),
                    ("write", topics.replay_request), own_availability],
        "verifier": [("read", topics.verify_request("#")), ("write", topics.verify_result("#")), own_availability],
        "review": [("write", topics.verdict("#")), ("read", topics.health("#")), own_availability],
    }
    return rules[role]


def acl_text(users: Mapping[MqttRole, str], topics: Topics) -> str:
    """A mosquitto ``acl_file``: one ``user`` section per role's account, nothing for anyone else."""
    owners: dict[str, MqttRole] = {}
    for role, user in users.items():
        if role not in ROLES:
            raise ConfigError("mqtt.accounts", [f"mqtt.accounts: unknown role {role!r} (roles: {', '.join(ROLES)})"])
        if user in owners:
            raise ConfigError("mqtt.accounts", [
                f"mqtt.accounts: account {user!r} is given to both {owners[user]!r} and {role!r}; each role "
                "needs its own account, or the broker cannot tell them apart"])
        owners[user] = role
    lines = ["# Bright Patrol broker ACL (patrol broker acl): one account per role, each only its topics."]
    for role, user in users.items():
        lines += ["", f"# role: {role}", f"user {user}"]
        lines += [f"topic {access} {topic}" for access, topic in role_rules(role, topics)]
    return "\n".join(lines) + "\n"


def site_acl(mqtt: MqttConfig) -> str:
    """The ACL for a site's configured accounts; every role must have one."""
    missing = [role for role in ROLES if role not in mqtt.accounts]
    if missing:
        raise ConfigError("mqtt.accounts", [
            f"mqtt.accounts: no account for role(s) {', '.join(missing)}; the ACL needs one account per role "
            "(pipeline, tickets, verifier, review)"])
    return acl_text({role: mqtt.accounts[role].username for role in ROLES}, Topics(mqtt.topic_prefix))
