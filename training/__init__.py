"""shelfguard training."""
