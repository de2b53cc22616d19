"""``"ENGINE": "replica_router.backends.postgresql"``: Django's PostgreSQL backend plus
passive health, safe read retry and bounded connections for the cluster's aliases."""
