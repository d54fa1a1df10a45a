"""Helpers with no divff concept in them: atomic writes, digests, offline and torch compatibility,
and the old module paths."""
