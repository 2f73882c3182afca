"""Site and camera configuration: pydantic models, the zone-type table, the loader and the YAML site files."""

from camera_config.loader import load_config, parse_config
from camera_config.schema import (
                                  Camera,
                                  KeepClearZone,
                                  NoParkingZone,
                                  NoVendingZone,
                                  SiteConfig,
                                  ZoneBase,
                                  register_zone_schema,
                                  unregister_zone_schema,
                                  zone_schema,
                                  zone_types,
)

__all__ = ["Camera", "KeepClearZone", "NoParkingZone", "NoVendingZone", "SiteConfig", "ZoneBase", "load_config",
           "parse_config", "register_zone_schema", "unregister_zone_schema", "zone_schema", "zone_types"]
