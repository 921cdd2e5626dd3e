"""Routing keys of keyed state: one function, compiled with the core (see :mod:`pipelines.native`),
since the ledger computes one per event."""

from __future__ import annotations

import json

_ESCAPED_KEY = "\x1f"


def state_key(sku: str, other: str) -> str:
    """The string that routes a ``(sku, location)`` — or ``(sku, reference)`` for transfer
    matching — to its state in the dataflow and the replay: ``"{sku}|{other}"``.

    That plain form is ambiguous when the sku itself contains ``|`` (``"A|B" + "C"`` and
    ``"A" + "B|C"`` both give ``"A|B|C"``), which would merge two keys' ledgers. Such a sku's key
    is escaped instead: ``"\x1f"`` + the JSON array ``[sku, other]``; so is a sku that starts with
    ``"\x1f"`` (its plain key could spell an escaped one). Ordinary skus keep the plain form.
    """
    if "|" in sku or sku.startswith(_ESCAPED_KEY):
        return _ESCAPED_KEY + json.dumps([sku, other], ensure_ascii=False)
    return f"{sku}|{other}"
