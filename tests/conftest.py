"""Fixtures shared by every test package. Append yours below; keep the others'.

Asset fixtures (models/ owner): registered files come through the asset cache
(``PATROL_CACHE``, seeded from the mirror ``PATROL_MIRROR`` / ``../shared``), never from
hard-coded paths into ../shared.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest

from core.assets import AssetCache, data_assets, default_mirror_dir

AssetPath = Callable[[str], Path]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only mirror of third-party data (``PATROL_MIRROR``, default ``../shared``)."""
    mirror = default_mirror_dir()
    if mirror is None or not mirror.is_dir():
        pytest.skip("no asset mirror: set PATROL_MIRROR or check out ../shared")
    return mirror


@pytest.fixture(scope="session")
def asset_path() -> AssetPath:
    """``asset_path(name)`` -> cached path of a registered data asset or model (fetched if needed)."""
    from models.registry import registry

    cache = AssetCache()

    def get(name: str) -> Path:
        models = registry()
        if name in models:
            return cache.fetch(models[name].asset())
        if name not in data_assets():
            raise KeyError(f"{name!r} is not a registered asset or model")
        return cache.fetch(data_assets()[name])

    return get


@pytest.fixture(scope="session")
def yolox_detector():  # type: ignore[no-untyped-def]
    """One YOLOX-Nano 416 detector for the whole session (score 0.3, per-class NMS)."""
    from models.factory import load_detector

    detector = load_detector("yolox_nano_416", score_threshold=0.3)
    detector.warmup()
    return detector


# ---- broker and database fixtures (storage / tickets owner) --------------------------------------

def _services():  # type: ignore[no-untyped-def]
    """``scripts/services.py`` (throwaway mosquitto and PostgreSQL), loaded by path."""
    import importlib.util
    import sys

    if "patrol_test_services" in sys.modules:
        return sys.modules["patrol_test_services"]
    path = Path(__file__).resolve().parents[1] / "scripts" / "services.py"
    spec = importlib.util.spec_from_file_location("patrol_test_services", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["patrol_test_services"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def services():  # type: ignore[no-untyped-def]
    """``scripts/services.py`` itself, for a test that starts a broker of its own making."""
    return _services()


@pytest.fixture
def mosquitto():  # type: ignore[no-untyped-def]
    """A fresh mosquitto on a free port with persistence; ``.stop()`` / ``.start()`` restart it."""
    import shutil

    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto not installed (scripts/install_system_deps.sh)")
    with _services().Mosquitto() as broker:
        yield broker


@pytest.fixture(scope="session")
def postgres_server():  # type: ignore[no-untyped-def]
    """One PostgreSQL cluster for the session (initdb in a temp dir, as user postgres when root)."""
    services = _services()
    if not (services.PG_BIN / "postgres").exists():
        pytest.skip(f"PostgreSQL binaries not found in {services.PG_BIN}")
    with services.Postgres() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL: a SQLite file, or a new database in the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'patrol.db'}"
    import uuid

    import sqlalchemy as sa

    pg = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return pg.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def db(db_url: str):  # type: ignore[no-untyped-def]
    """An open, migrated :class:`storage.db.Database` over :func:`db_url`."""
    from storage.db import open_database

    database = open_database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def make_incident_event():  # type: ignore[no-untyped-def]
    """``make_incident_event(incident_id, seq, event="opened", **fields)`` -> a valid IncidentEvent."""
    from core.events import Evidence, IncidentEvent

    def make(incident_id: str = "inc-0001", seq: int = 1, event: str = "opened", **fields: object) -> IncidentEvent:
        values: dict[str, object] = {
            "incident_id": incident_id, "seq": seq, "event": event, "type": "illegal_parking",
            "camera_id": "cam-1", "grid_cell": "G-01", "zone_id": "kerb", "location": (0.5, 0.8),
            "started_at": 1_700_000_000.0, "event_at": 1_700_000_000.0 + seq,
            "evidence": Evidence(links={"snapshot": f"evidence/{incident_id}/snap.jpg"}),
        }
        values.update(fields)
        return IncidentEvent.model_validate(values)

    return make


# --- RTSP test server (pipeline sources owner) ----------------------------------------------------

def _rtsp_server_module():  # type: ignore[no-untyped-def]
    """scripts/rtsp_server.py, imported for its RtspServerProcess helper (no GStreamer needed here)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "rtsp_server.py"
    spec = importlib.util.spec_from_file_location("patrol_rtsp_server", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def rtsp_server_module():  # type: ignore[no-untyped-def]
    """The rtsp_server module; skips when the system Python lacks GStreamer's RTSP server (python3-gi)."""
    import subprocess

    module = _rtsp_server_module()
    probe = [module.SYSTEM_PYTHON, "-c",
             "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"]
    try:
        ok = subprocess.run(probe, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        pytest.skip("GStreamer RTSP server not installed (scripts/install_system_deps.sh)")
    return module


@pytest.fixture
def rtsp_server(rtsp_server_module, tmp_path: Path):  # type: ignore[no-untyped-def]
    """``rtsp_server({"mount": clip_path}, user=None, password=None, scale=None, fps=None, gop=None)``
    -> a started ``RtspServerProcess`` on a free port (answers RTSP OPTIONS before it returns).

    ``srv.url(mount, user=, password=)`` builds the URL; ``srv.kill()`` SIGKILLs it like a dead camera,
    ``srv.start()`` brings it back on the same port, ``srv.restart(down_s)`` does both. Every server
    started here is killed at teardown; its log is ``tmp_path/rtsp-N.log``.
    """
    servers = []

    def start(mounts: dict[str, Path | str], **kwargs: object):  # type: ignore[no-untyped-def]
        srv = rtsp_server_module.RtspServerProcess(
            mounts, log_path=tmp_path / f"rtsp-{len(servers)}.log", **kwargs)
        servers.append(srv)
        return srv.start()

    yield start
    for srv in servers:
        srv.kill()


class AclBroker:
    """A mosquitto with a password file and the per-role ACL (alerts/acl.py): one account per role."""

    passwords: ClassVar[dict[str, str]] = {"pl-acct": "pl-pw", "tk-acct": "tk-pw", "vf-acct": "vf-pw",
                                           "rv-acct": "rv-pw"}
    accounts: ClassVar[dict[str, str]] = {"pipeline": "pl-acct", "tickets": "tk-acct", "verifier": "vf-acct",
                                          "review": "rv-acct"}

    def __init__(self, broker) -> None:  # type: ignore[no-untyped-def]
        self.broker = broker
        self.port: int = broker.port

    def mqtt(self, role: str | None = None):  # type: ignore[no-untyped-def]
        """The MqttConfig with every role's account; ``role``: as that role connects."""
        from camera_config.schema import MqttAccount, MqttConfig

        cfg = MqttConfig(port=self.port, accounts={r: MqttAccount(username=u, password=self.passwords[u])
                                                   for r, u in self.accounts.items()})
        return cfg if role is None else cfg.for_role(role)  # type: ignore[arg-type]

    def pub(self, user: str, topic: str, payload: str) -> str:
        """Publish at QoS 1 with mosquitto's own client (MQTT v5); its debug output shows the PUBACK code
        (``RC:135``: not authorized)."""
        import subprocess

        done = subprocess.run(["mosquitto_pub", "-V", "mqttv5", "-p", str(self.port), "-u", user,
                               "-P", self.passwords[user], "-q", "1", "-d", "-t", topic, "-m", payload],
                              capture_output=True, text=True, timeout=20)
        return done.stdout + done.stderr


@pytest.fixture
def acl_broker():  # type: ignore[no-untyped-def]
    """:class:`AclBroker`: a fresh mosquitto with the four role accounts and their ACL."""
    import shutil

    from alerts.acl import acl_text
    from core.topics import Topics

    if shutil.which("mosquitto") is None or shutil.which("mosquitto_pub") is None:
        pytest.skip("mosquitto / mosquitto-clients not installed (scripts/install_system_deps.sh)")
    acl = acl_text(AclBroker.accounts, Topics())  # type: ignore[arg-type]
    with _services().Mosquitto(users=AclBroker.passwords, acl=acl) as broker:
        yield AclBroker(broker)


@pytest.fixture
def mosquitto_auth():  # type: ignore[no-untyped-def]
    """A mosquitto that only lets in user ``pipeline`` with password ``s3cret-pw``."""
    import shutil

    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto not installed (scripts/install_system_deps.sh)")
    with _services().Mosquitto(users={"pipeline": "s3cret-pw"}) as broker:
        yield broker


@pytest.fixture
def own_postgres():  # type: ignore[no-untyped-def]
    """A PostgreSQL of this test's own, to stop and start (``.stop()`` / ``.start()``, ``.url``)."""
    services = _services()
    if not (services.PG_BIN / "postgres").exists():
        pytest.skip(f"PostgreSQL binaries not found in {services.PG_BIN}")
    with services.Postgres() as pg:
        yield pg
