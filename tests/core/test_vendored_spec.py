"""The specs vendored in tests/core/data are the team's shared spec, word for word.

The other tests read the vendored copies, so a clone of this repository alone runs them all;
this one guards the copies against drift where the shared spec directory is at hand.
"""

from __future__ import annotations

import pytest

from tests.core.conftest import DATA, SHARED_SPEC, VENDORED_SPECS


@pytest.mark.parametrize("name", VENDORED_SPECS)
def test_the_vendored_copy_is_the_shared_spec(name: str) -> None:
    shared = SHARED_SPEC / name
    if not shared.exists():
        pytest.skip(
            f"compares tests/core/data/{name} with the shared spec at {shared}, which only the "
            "team's workspace holds (beside the checkout); the other tests use the vendored "
            "copy, so nothing else is skipped"
        )
    assert (DATA / name).read_bytes() == shared.read_bytes(), (
        f"tests/core/data/{name} differs from {shared}: copy the shared one over it"
    )
