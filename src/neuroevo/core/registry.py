"""A small name -> object registry with one-line errors that list what is allowed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from neuroevo.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names (and aliases) to objects; used for activations, initialisers, strategies, tasks."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, item: T, *, aliases: tuple[str, ...] = (), overwrite: bool = False) -> T:
        """Add ``item`` under ``name``; refuse to silently replace an existing entry."""
        key = name.lower()
        if not overwrite and (key in self._items or key in self._aliases):
            raise ConfigError(f"{self.kind} {name!r} is already registered (pass overwrite=True to replace)")
        self._items[key] = item
        for alias in aliases:
            self._aliases[alias.lower()] = key
        return item

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or one of its aliases."""
        key = str(name).lower()
        key = self._aliases.get(key, key)
        if key not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")
        return key

    def get(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def names(self) -> list[str]:
        return sorted(self._items)

    def aliases_of(self, name: str) -> list[str]:
        return sorted(a for a, target in self._aliases.items() if target == name)

    def __contains__(self, name: object) -> bool:
        key = str(name).lower()
        return self._aliases.get(key, key) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._items[n]) for n in self.names()]
