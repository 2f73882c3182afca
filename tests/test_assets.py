"""The asset registry and cache: checked copies from a mirror, checked downloads, clear refusals."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.assets import (
    ASSETS_YAML,
    REPO_ROOT,
    Asset,
    AssetCache,
    asset_from_mapping,
    data_assets,
    load_asset_file,
    sha256_of,
)
from core.errors import AssetError
from models.registry import load_registry, registry

PAYLOAD = b"not really a video, but bytes with a known digest\n" * 100
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _asset(url: str | None = None, path: str = "footage/clip.mp4") -> Asset:
    return Asset(name="clip", path=path, kind="footage", licence="MIT", source="https://example.invalid/clip",
                 sha256=PAYLOAD_SHA, size=len(PAYLOAD), url=url)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/clip.mp4"  # nothing listens there any more


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    root = tmp_path / "mirror"
    (root / "footage").mkdir(parents=True)
    (root / "footage" / "clip.mp4").write_bytes(PAYLOAD)
    return root


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A local HTTP server over a temp folder: the download road without the internet."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(*a, directory=str(served), **k)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _leftovers(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()]


# --- fetching -------------------------------------------------------------------------------------

def test_fetch_copies_from_mirror_and_then_serves_from_cache(tmp_path: Path, mirror: Path) -> None:
    cache = AssetCache(tmp_path / "cache", mirror, allow_download=False)
    path = cache.fetch(_asset())
    assert path == tmp_path / "cache" / "footage" / "clip.mp4"
    assert path.read_bytes() == PAYLOAD
    (mirror / "footage" / "clip.mp4").unlink()  # the cache alone is enough now
    assert cache.fetch(_asset()) == path
    assert cache.is_cached(_asset())


def test_tampered_mirror_file_is_refused_and_not_cached(tmp_path: Path, mirror: Path) -> None:
    (mirror / "footage" / "clip.mp4").write_bytes(PAYLOAD + b"tampered")
    cache = AssetCache(tmp_path / "cache", mirror, allow_download=False)
    with pytest.raises(AssetError) as err:
        cache.fetch(_asset())
    msg = str(err.value)
    actual = hashlib.sha256(PAYLOAD + b"tampered").hexdigest()
    assert "footage/clip.mp4" in msg and f"expected {PAYLOAD_SHA}" in msg and f"got {actual}" in msg
    assert _leftovers(tmp_path / "cache") == []  # no bad file, no temp file


def test_corrupted_cache_file_is_replaced_from_mirror(tmp_path: Path, mirror: Path) -> None:
    cache = AssetCache(tmp_path / "cache", mirror, allow_download=False)
    path = cache.fetch(_asset())
    path.write_bytes(b"bit rot")
    assert not cache.is_cached(_asset())
    assert cache.fetch(_asset()).read_bytes() == PAYLOAD

    path.write_bytes(b"bit rot again")
    (mirror / "footage" / "clip.mp4").unlink()
    with pytest.raises(AssetError, match="not in mirror") as err:
        cache.fetch(_asset())
    assert "no such folder" not in str(err.value)  # the mirror is there, only the file is not
    assert not path.exists()  # the damaged copy is gone, not served later


def test_no_mirror_and_unreachable_url_is_a_clear_error(tmp_path: Path) -> None:
    url = _closed_port_url()
    cache = AssetCache(tmp_path / "cache", tmp_path / "empty-mirror")
    with pytest.raises(AssetError) as err:
        cache.fetch(_asset(url=url))
    msg = str(err.value)
    assert "asset 'clip'" in msg and "footage/clip.mp4" in msg
    assert f"not in mirror {tmp_path / 'empty-mirror'} (no such folder: set PATROL_MIRROR" in msg
    assert f"download from {url} failed" in msg
    assert _leftovers(tmp_path / "cache") == []


def test_re_encoded_asset_without_url_says_why_it_cannot_be_downloaded(tmp_path: Path) -> None:
    cache = AssetCache(tmp_path / "cache", None)
    with pytest.raises(AssetError, match=r"no mirror .*no download address"):
        cache.fetch(_asset(url=None))


def test_download_is_checked_then_cached(tmp_path: Path, http_dir: tuple[Path, str]) -> None:
    served, base = http_dir
    (served / "clip.mp4").write_bytes(PAYLOAD)
    (served / "bad.mp4").write_bytes(b"something else")
    cache = AssetCache(tmp_path / "cache", None)
    assert cache.fetch(_asset(url=f"{base}/clip.mp4")).read_bytes() == PAYLOAD

    other = AssetCache(tmp_path / "cache2", None)
    with pytest.raises(AssetError, match=rf"download {base}/bad.mp4 has the wrong sha256.*expected {PAYLOAD_SHA}"):
        other.fetch(_asset(url=f"{base}/bad.mp4"))
    assert _leftovers(tmp_path / "cache2") == []


def test_folder_asset_checks_every_member(tmp_path: Path) -> None:
    root = tmp_path / "mirror"
    (root / "images" / "set" / "labels").mkdir(parents=True)
    (root / "images" / "set" / "a.jpg").write_bytes(b"a")
    (root / "images" / "set" / "labels" / "a.txt").write_bytes(b"1 0.5 0.5 0.1 0.1\n")
    entry = {"path": "images/set", "kind": "dataset", "licence": "MIT", "source": "https://example.invalid",
             "files": {"a.jpg": hashlib.sha256(b"a").hexdigest(),
                       "labels/a.txt": hashlib.sha256(b"1 0.5 0.5 0.1 0.1\n").hexdigest()}}
    folder = asset_from_mapping("set", entry, "test")
    cache = AssetCache(tmp_path / "cache", root, allow_download=False)
    out = cache.fetch(folder)
    assert (out / "labels" / "a.txt").read_bytes() == b"1 0.5 0.5 0.1 0.1\n"

    (root / "images" / "set" / "labels" / "a.txt").write_bytes(b"changed")
    (out / "labels" / "a.txt").unlink()
    with pytest.raises(AssetError, match=r"images/set/labels/a.txt: expected"):
        cache.fetch(folder)
    assert not (out / "labels" / "a.txt").exists() and (out / "a.jpg").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"sha256": "abc"}, "sha256 must be 64 lowercase hex digits"),
    ({"colour": "red"}, "unknown field(s) ['colour']"),
    ({"kind": "weights"}, "kind must be one of"),
    ({"path": "../outside.mp4"}, "path must be relative and stay inside the cache"),
    ({"licence": ""}, "field 'licence' is required"),
])
def test_bad_registry_entries_name_entry_and_field(change: dict, message: str) -> None:
    entry = {"path": "footage/x.mp4", "kind": "footage", "licence": "MIT", "source": "https://x",
             "sha256": PAYLOAD_SHA, **change}
    with pytest.raises(AssetError) as err:
        asset_from_mapping("x", entry, "assets.yaml")
    assert "assets.yaml: asset 'x'" in str(err.value) and message in str(err.value)


def test_model_registry_errors_name_model_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "registry.yaml"
    bad.write_text("models:\n  m:\n    file: m.onnx\n    sha256: zz\n")
    with pytest.raises(AssetError, match=r"model 'm': field"):
        load_registry(bad)


# --- the real registries ----------------------------------------------------------------------------

def test_registries_load_and_every_entry_has_licence_and_public_source() -> None:
    assets = load_asset_file(ASSETS_YAML)
    assert {"bus_jpg", "zidane_jpg", "vendor_carts", "vehicle_counting_input_video",
            "candela_m1_10_groundtruth"} <= set(assets)
    for a in assets.values():
        assert a.licence and a.source.startswith("https://"), a.name
        assert a.url is None or a.url.startswith("https://"), a.name
    assert len(assets["vendor_carts"].files) == 2 * 151 + 2  # images + labels + README + licence
    assert set(registry()) == {"yolox_nano_416", "picodet_s_416_coco", "picodet_s_320_coco",
                               "nanodet_m_416", "nanodet_m_320", "fastestdet_352"}
    for spec in registry().values():
        assert spec.source.startswith("https://raw.githubusercontent.com/"), spec.name


def test_every_mirror_file_is_registered_with_its_digest(shared_dir: Path) -> None:
    registered = {m.path: m.sha256 for a in data_assets().values() for m in a.members()}
    registered |= {s.asset().path: s.sha256 for s in registry().values()}
    wanted = [p for pattern in ("footage/**/*.mp4", "footage/**/*.avi", "footage/**/*.png", "images/**/*",
                                "models/*.onnx") for p in shared_dir.glob(pattern) if p.is_file()]
    assert len(wanted) > 900
    missing = [str(p.relative_to(shared_dir)) for p in wanted if str(p.relative_to(shared_dir)) not in registered]
    assert missing == []
    for p in shared_dir.glob("models/*.onnx"):
        assert registered[f"models/{p.name}"] == sha256_of(p), p.name


def test_model_digests_match_the_mirror_checksum_list(shared_dir: Path) -> None:
    sums = dict(reversed(line.split()) for line in (shared_dir / "models" / "SHA256SUMS").read_text().splitlines())
    assert {s.file: s.sha256 for s in registry().values()} == sums


def test_no_third_party_data_is_committed(shared_dir: Path) -> None:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True)
    files = [f for f in tracked.stdout.decode().split("\0") if f]
    from models.stall_signal import load_signal_spec

    own = {f"models/{load_signal_spec().file}"}  # the project's own trained classifier (8 kB, with its card)
    heavy = [f for f in files if f.lower().endswith((".onnx", ".mp4", ".avi", ".pt", ".jpg", ".jpeg", ".png"))]
    assert [f for f in heavy if f not in own] == []
    shared_digests = {sha256_of(p) for p in shared_dir.rglob("*")
                      if p.is_file() and p.suffix.lower() in {".onnx", ".mp4", ".avi", ".jpg", ".png"}}
    committed = {sha256_of(REPO_ROOT / f) for f in files if (REPO_ROOT / f).is_file()}
    assert committed & shared_digests == set()


# --- the CLI ---------------------------------------------------------------------------------------

def _patrol(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "patrol", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=REPO_ROOT, timeout=120)


def test_cli_fetches_from_mirror_offline_and_lists(tmp_path: Path, shared_dir: Path) -> None:
    env = {"PATROL_CACHE": str(tmp_path / "cache"), "PATROL_MIRROR": str(shared_dir)}
    done = _patrol("models", "fetch", "fastestdet_352", env=env)
    assert done.returncode == 0, done.stderr
    assert sha256_of(tmp_path / "cache" / "models" / "fastestdet_352.onnx") == registry()["fastestdet_352"].sha256
    done = _patrol("assets", "fetch", "bus_jpg", "hall_and_monitor_groundtruth", env=env)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "cache" / "footage/static_objects/HallAndMonitor_groundtruth").glob("*.png"))) == 296
    rows = [json.loads(line) for line in _patrol("models", "list", "--json", env=env).stdout.splitlines()]
    cached = {r["name"]: r["cached"] for r in rows}
    assert cached["fastestdet_352"] is True and cached["yolox_nano_416"] is False


def test_cli_unknown_name_and_missing_everything_exit_2_with_a_message(tmp_path: Path) -> None:
    env = {"PATROL_CACHE": str(tmp_path / "cache"), "PATROL_MIRROR": str(tmp_path / "nowhere")}
    done = _patrol("assets", "fetch", "no_such_clip", env=env)
    assert done.returncode == 2 and "unknown asset 'no_such_clip'" in done.stderr
    done = _patrol("assets", "fetch", "evadb_traffic_10fps", env=env)
    assert done.returncode == 2
    assert "asset 'evadb_traffic_10fps'" in done.stderr and "not in mirror" in done.stderr
    assert "Traceback" not in done.stderr
