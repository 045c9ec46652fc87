"""The store room: the only code that knows golden file paths and formats."""
