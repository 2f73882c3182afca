"""``patrol models list|fetch`` and ``patrol assets list|fetch|manifest``: the registered files.

Both fetch into the asset cache (``PATROL_CACHE``) from the mirror (``PATROL_MIRROR``, default
``../shared``) or the public URL, checking every sha256; ``make assets`` runs both with ``--all``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import yaml

from core.assets import Asset, AssetCache, data_assets, folder_manifest, get_asset
from core.errors import AssetError
from core.progress import progress
from models.registry import registry


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="list or fetch the registered detector models")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    q = msub.add_parser("list", help="table of registered models (--json for one object per line)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=models_list)
    q = msub.add_parser("fetch", help="copy/download a model into the cache and check its sha256")
    _name_or_all(q)
    q.set_defaults(func=models_fetch)

    p = sub.add_parser("assets", help="list or fetch registered data files (footage, images, ground truth)")
    asub = p.add_subparsers(dest="assets_command", metavar="ACTION", required=True)
    q = asub.add_parser("list", help="table of registered data assets (--json for one object per line)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=assets_list)
    q = asub.add_parser("fetch", help="copy/download data assets into the cache and check every sha256")
    _name_or_all(q)
    q.set_defaults(func=assets_fetch)
    q = asub.add_parser("manifest", help="print a folder entry's 'files:' map (sha256 per file) for assets.yaml")
    q.add_argument("folder", help="folder path relative to the mirror, e.g. images/vendor_carts")
    q.set_defaults(func=assets_manifest)


def _name_or_all(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME")
    parser.add_argument("--all", action="store_true", help="every registered entry")


def _select(args: argparse.Namespace, known: Sequence[str], what: str) -> list[str]:
    if args.all:
        return list(known)
    if not args.names:
        raise AssetError(f"name a {what} to fetch or pass --all; known: {', '.join(known)}")
    return list(args.names)


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _state(cache: AssetCache, asset: Asset) -> str:
    return "cached" if cache.is_cached(asset) else "-"


def models_list(args: argparse.Namespace) -> int:
    cache = AssetCache()
    specs = registry()
    if args.json:
        for spec in specs.values():
            row = spec.model_dump(mode="json")
            row["cached"] = cache.is_cached(spec.asset())
            print(json.dumps(row))
        return 0
    rows = [[s.name, s.family, f"{s.input.width}x{s.input.height}", s.input.colour, s.input.resize,
             f"{s.size / 1e6:.1f} MB", s.licence.split(" ")[0], _state(cache, s.asset())] for s in specs.values()]
    _print_table(rows, ["name", "family", "input", "colour", "resize", "size", "licence", "cache"])
    return 0


def models_fetch(args: argparse.Namespace) -> int:
    specs = registry()
    cache = AssetCache()
    for name in progress(_select(args, list(specs), "model"), desc="fetch models", unit="model"):
        if name not in specs:
            raise AssetError(f"unknown model {name!r}; known: {', '.join(specs)}")
        print(f"{name}: {cache.fetch(specs[name].asset())}")
    return 0


def assets_list(args: argparse.Namespace) -> int:
    cache = AssetCache()
    assets = data_assets()
    if args.json:
        for a in assets.values():
            print(json.dumps({"name": a.name, "kind": a.kind, "path": a.path, "size": a.total_size,
                              "files": len(a.members()), "licence": a.licence, "source": a.source,
                              "url": a.url, "cached": cache.is_cached(a)}))
        return 0
    rows = [[a.name, a.kind, a.path, str(len(a.members())), f"{a.total_size / 1e6:.1f} MB",
             a.licence.split(" ")[0].rstrip(";"), _state(cache, a)] for a in assets.values()]
    _print_table(rows, ["name", "kind", "path", "files", "size", "licence", "cache"])
    return 0


def assets_fetch(args: argparse.Namespace) -> int:
    cache = AssetCache()
    for name in progress(_select(args, list(data_assets()), "data asset"), desc="fetch assets", unit="asset"):
        print(f"{name}: {cache.fetch(get_asset(name))}")
    return 0


def assets_manifest(args: argparse.Namespace) -> int:
    mirror = AssetCache().mirror_dir
    if mirror is None:
        raise AssetError("no mirror directory: set PATROL_MIRROR")
    print(yaml.safe_dump({"files": folder_manifest(mirror, args.folder)}, sort_keys=False), end="")
    return 0
