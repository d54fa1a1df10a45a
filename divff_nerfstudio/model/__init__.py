"""The triple-stream model: field, proposal, hash encoding, compositing, language heads and queries."""
