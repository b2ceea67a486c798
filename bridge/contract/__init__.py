"""The daemon's side of the message contract: building outcomes and exporting the schemas.

The contract's models and codec live in the ``genesys-bridge-client`` distribution
(``genesys_bridge_client.contract``), which both the daemon and integrating services import: one source for
the JSON Schemas, the AsyncAPI document and the client.
"""
