"""Protected clusters: members, roles read at run time, fencing, failover, switchover and rejoin."""
