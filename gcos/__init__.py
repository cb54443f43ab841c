"""gcos: a gated build-intake orchestrator for PostgreSQL."""

__version__ = "0.1.0"
