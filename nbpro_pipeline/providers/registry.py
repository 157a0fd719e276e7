"""Every provider the pipeline knows, in one registry: validation, prices, reports, FOCUS, charts,
galleries, the Dagster partitions and resources and the CLI read it, never a provider's name. A
provider the project does not ship (a test's) is added with ``registered``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

from nbpro_pipeline.providers import odirouter, rivya
from nbpro_pipeline.providers.base import ProviderTraits
from nbpro_pipeline.providers.entry import ProviderEntry

SHIPPED: tuple[ProviderEntry, ...] = (rivya.ENTRY, odirouter.ENTRY)


class Provider(StrEnum):
    """The shipped providers' names, for code that names one on purpose (tests, the sandbox)."""

    RIVYA = rivya.NAME
    ODIROUTER = odirouter.NAME


class UnknownProvider(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class Registry:
    """Providers by name, in the order they were added (the order of partitions, reports and charts)."""

    def __init__(self, entries: tuple[ProviderEntry, ...] = ()) -> None:
        self._entries: dict[str, ProviderEntry] = {}
        for entry in entries:
            self.register(entry)

    def register(self, entry: ProviderEntry) -> None:
        if entry.name in self._entries and self._entries[entry.name] is not entry:
            raise ValueError(f"a provider named {entry.name!r} is registered already")
        self._entries[entry.name] = entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def __getitem__(self, name: str) -> ProviderEntry:
        try:
            return self._entries[str(name)]
        except KeyError:
            raise UnknownProvider(f"unknown provider {name!r}; known: {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        return str(name) in self._entries

    def __iter__(self) -> Iterator[ProviderEntry]:
        return iter(list(self._entries.values()))

    def names(self) -> list[str]:
        return list(self._entries)

    def traits(self, name: str) -> ProviderTraits:
        return self[name].traits

    def order(self, name: str) -> int:
        """Position of ``name`` for sorting; unknown names last."""
        names = self.names()
        return names.index(name) if name in names else len(names)


PROVIDERS = Registry(SHIPPED)


@contextmanager
def registered(entry: ProviderEntry) -> Iterator[ProviderEntry]:
    """``entry`` in the registry for the block (a provider defined outside the package, e.g. a test's)."""
    PROVIDERS.register(entry)
    try:
        yield entry
    finally:
        PROVIDERS.unregister(entry.name)
