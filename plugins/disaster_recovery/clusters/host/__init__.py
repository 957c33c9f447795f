"""Acting on a member's host: server control, standby configuration, reading its WAL."""
