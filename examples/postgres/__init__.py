"""An orders ledger on a real PostgreSQL that records each order once, whatever the network does."""
