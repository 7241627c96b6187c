"""Worker bootsteps: one small step per file."""
