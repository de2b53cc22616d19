"""The tutorial's ``router`` app: the ``ReplicationModel`` and a few JSON views."""
