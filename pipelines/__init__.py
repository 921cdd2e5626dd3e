"""shelfguard pipelines."""
