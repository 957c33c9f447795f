"""The lifecycle actions of a cluster: failover, switchover, rejoin (each returns phases and a sentence)."""
