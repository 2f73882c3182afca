"""Site and camera configuration: pydantic models, the loader and the YAML site files."""

from camera_config.loader import load_config, parse_config
from camera_config.schema import Camera, KeepClearZone, NoParkingZone, NoVendingZone, SiteConfig

__all__ = ["Camera", "KeepClearZone", "NoParkingZone", "NoVendingZone", "SiteConfig", "load_config",
           "parse_config"]
