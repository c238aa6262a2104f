"""Test kit for event stores and the applications built on them, installed with the package.

Import the modules you need; this package imports nothing itself (``plugin`` is loaded by
every pytest run of every user):

- ``contract.StoreContract``: the whole driver contract as a pytest class to subclass.
- ``machine``: the hypothesis state machine of a store against a plain model, for any factory.
- ``strategies``: hypothesis strategies for drafts, agent-like streams and anomalous streams.
- ``support``: small builders and checks (``delta``, ``deltas``, ``new_session``, ``take``...).
- ``databases``: fresh, dropped-afterwards Postgres schemas from ``SANDBOX_AGENT_TEST_PG_URL``.
- ``store_fixtures`` and ``plugin``: the ``event_store`` fixture (memory, SQLite, Postgres).
- ``faults``, ``server``, ``server_fixtures``, ``consistency``: faults and whole-server recovery.
"""
