"""The session room: the one core that runs a suite end to end for every entry point."""
