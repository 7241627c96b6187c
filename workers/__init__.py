"""How messages are handled: the per-message lifecycle, operations and scaling."""
