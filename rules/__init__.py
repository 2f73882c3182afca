"""The rules: one module per rule kind (parking, stall, obstruction), the background model, the
incident lifecycle, the per-camera analyzer and replay core, and the registry of rule kinds."""
