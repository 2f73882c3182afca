"""Subcommand groups of the patrol CLI, one module each."""
