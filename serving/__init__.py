"""shelfguard serving."""
