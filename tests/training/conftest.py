from pathlib import Path

import pytest

from training.worlds import WorldConfig

TINY_TRAIN = (
    WorldConfig("tiny-a", 201, 3, 40, 21),
    WorldConfig("tiny-b", 202, 3, 40, 21, overrides={"shrink_base": 0.03}),
)
TINY_HOLDOUT = (WorldConfig("tiny-hold", 909, 4, 40, 21, "pos_outage", {"shrink_base": 0.03}),)


@pytest.fixture(scope="session")
def tiny_worlds(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("worlds")
