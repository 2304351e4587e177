"""A small name -> object registry with one-line errors that list what is allowed, and plugins.

A registry may name a Python entry-point group (``neuroevo.strategies``, ``neuroevo.tasks``,
``neuroevo.networks``, ``neuroevo.activations``). Third-party packages declare entries in
it; the entry point's name is the registered name and its object is what the matching
``register_*`` call takes. Plugins are discovered by name without importing them, and
imported the first time their name is used (``get``, ``items``), so a broken plugin stops
only what uses it, with one line naming the plugin and the error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from neuroevo.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names (and aliases) to objects; used for activations, initialisers, strategies, tasks, networks.

    ``group`` is the entry-point group plugins register in; ``adapt(name, obj)`` turns an
    entry point's object into a registry item (e.g. sets the name of a network entry).
    """

    def __init__(self, kind: str, group: str | None = None, adapt: Callable[[str, object], T] | None = None):
        self.kind = kind
        self.group = group
        self._adapt = adapt
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._plugins: dict[str, EntryPoint] | None = None

    def register(self, name: str, item: T, *, aliases: tuple[str, ...] = (), overwrite: bool = False) -> T:
        """Add ``item`` under ``name``; refuse to silently replace an existing entry."""
        key = name.lower()
        if not overwrite and (key in self._items or key in self._aliases):
            raise ConfigError(f"{self.kind} {name!r} is already registered (pass overwrite=True to replace)")
        self._items[key] = item
        for alias in aliases:
            self._aliases[alias.lower()] = key
        return item

    # -- plugins ------------------------------------------------------------------------------
    def _discovered(self) -> dict[str, EntryPoint]:
        """Entry points of the group not shadowed by a built-in name (found once, not imported)."""
        if self._plugins is None:
            self._plugins = {}
            if self.group:
                for ep in entry_points(group=self.group):
                    key = ep.name.lower()
                    if key not in self._items and key not in self._aliases:
                        self._plugins.setdefault(key, ep)
        return self._plugins

    def _load_plugin(self, key: str) -> None:
        ep = self._discovered().pop(key)
        try:
            obj = ep.load()
            item = self._adapt(ep.name, obj) if self._adapt else obj
        except Exception as exc:  # a third party's import may fail in any way: one line naming it
            raise ConfigError(
                f"plugin {ep.name!r} ({self.group} = {ep.value!r}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        self._items[key] = item

    def load_plugins(self) -> list[str]:
        """Import every discovered plugin; returns one line per failed one (left unregistered)."""
        failures = []
        for key in list(self._discovered()):
            try:
                self._load_plugin(key)
            except ConfigError as exc:
                failures.append(str(exc))
        return failures

    # -- lookups ------------------------------------------------------------------------------
    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or one of its aliases (importing a plugin if it is one)."""
        key = str(name).lower()
        key = self._aliases.get(key, key)
        if key not in self._items and key in self._discovered():
            self._load_plugin(key)
        if key not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")
        return key

    def get(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def names(self) -> list[str]:
        """Every registered name, plugins included (not imported by this call)."""
        return sorted({*self._items, *self._discovered()})

    def aliases_of(self, name: str) -> list[str]:
        return sorted(a for a, target in self._aliases.items() if target == name)

    def __contains__(self, name: object) -> bool:
        key = str(name).lower()
        key = self._aliases.get(key, key)
        return key in self._items or key in self._discovered()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        """(name, item) pairs; plugins are imported, and one that fails raises its one-line error."""
        for key in list(self._discovered()):
            self._load_plugin(key)
        return [(n, self._items[n]) for n in sorted(self._items)]
