"""The plan language: the pydantic models of a plan's parts (steps, their configs, checks, channels, names)."""
