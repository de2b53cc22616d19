# ruff: noqa: N999 - the tutorial names the project package DJReplica
"""The DJReplica project: the replication tutorial's Django site, routed by replica_router."""
