"""How actor messages cross a process boundary: Redis requests, replies and outcomes."""
