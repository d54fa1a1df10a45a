"""Dataparsers for EPIC-Diff scenes and own videos (import nothing from the trainer)."""
