"""Storage of the approval service: SQLAlchemy tables (:mod:`.tables`) and the
:class:`~serving.store.db.Store` (engine, Alembic migrations, transactions)."""

from serving.store.db import Store, normalise_url

__all__ = ["Store", "normalise_url"]
