"""dso: a blockchain-backed, decentralized registry of AI-agent experiences."""

__version__ = "0.1.0"
