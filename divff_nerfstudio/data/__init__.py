"""Training data: the datamanager (rays + language targets) and frame ids <-> times."""
