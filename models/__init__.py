"""Detectors: the Detector protocol, one adapter per ONNX output family, and the model registry."""
