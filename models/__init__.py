"""shelfguard models."""
