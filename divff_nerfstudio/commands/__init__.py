"""The `divff-*` commands: thin tyro front ends over the library."""
