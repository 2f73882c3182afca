"""The optional mqtt / database / tickets sections of a site config: defaults keep old configs valid,
bad routing names the cell and the type."""

from __future__ import annotations

import pytest

from camera_config.loader import parse_config
from core.errors import ConfigError

BASE = {"site": {"name": "x"}, "cameras": [{"id": "c1", "url": "rtsp://u:p@h/s", "grid_cell": "G-01"}]}


def test_sections_are_optional() -> None:
    cfg = parse_config(BASE)
    assert (cfg.mqtt.port, cfg.mqtt.topic_prefix, cfg.database.url) == (1883, "patrol/v1",
                                                                         "sqlite:///var/data/patrol.db")
    assert cfg.tickets.deadlines_s["illegal_parking"] == 1_800.0


@pytest.mark.parametrize(("section", "message"), [
    ({"tickets": {"routes": {"G-01": {"parking": "police"}}}},
     "tickets.routes: grid cell 'G-01': unknown incident type(s) ['parking']"),
    ({"tickets": {"deadlines_s": {"illegal_parking": -5}}}, "tickets.deadlines_s.illegal_parking"),
    ({"mqtt": {"port": 0}}, "mqtt.port"),
    ({"mqtt": {"topic_prefix": "patrol/v1/"}}, "mqtt.topic_prefix"),
    ({"mqtt": {"tls": {"ca_file": "ca.pem", "verify": False}}}, "unknown key 'verify'"),
])
def test_bad_sections_name_the_field(section: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, **section}, "site.yaml")
    assert any(message in p for p in info.value.problems), info.value.problems


def test_mqtt_password_is_secret() -> None:
    cfg = parse_config({**BASE, "mqtt": {"username": "pipe", "password": "hunter2"}})
    assert "hunter2" not in repr(cfg.mqtt)
    assert cfg.mqtt.password is not None and cfg.mqtt.password.get_secret_value() == "hunter2"
