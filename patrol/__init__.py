"""Bright Patrol command line and cross-cutting plumbing (errors, logging, assets)."""
