"""Tamper evidence over the ledger: Merkle seals of each tenant's events and ``llm-ledger audit verify``."""
