"""Switches and records of an optional stand-in route module, one set per running stand-in.

The extra route modules (auth API, ingress route, proxy routes) keep their state beside
``StandinState`` rather than in it: made on first use, dropped with the stand-in.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from tests.standin.server import StandinState

T = TypeVar("T")


class PerStandin(Generic[T]):
    """``accessor(state)``: this module's state object for the stand-in ``state``."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._states: weakref.WeakKeyDictionary[StandinState, T] = weakref.WeakKeyDictionary()

    def __call__(self, state: StandinState) -> T:
        found = self._states.get(state)
        if found is None:
            found = self._states[state] = self._make()
        return found
