"""Helpers with no divff concept in them: atomic writes, digests, offline and torch compatibility,
the old module paths and the dependencies' known warnings."""
