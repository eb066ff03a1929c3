"""The shape of Pegasus 5 YAML documents, checked before anything else reads them.

YAML aliases let a few hundred bytes stand for a structure of billions of nodes (nested lists
of aliases of lists): the loader shares the nodes, so loading is quick, but anything that walks
or prints such a value never ends. So the fields the workflow readers use are checked to have
the schema's type first, descending only where the schema has a list or a mapping, and a value
is only ever shown through :func:`shown`, which bounds its size.
"""

from __future__ import annotations

import reprlib
from typing import Any

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 1, 40, 40
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = _REPR.maxset = 3


def shown(value: Any) -> str:
    """``value`` as a short text, however big it is."""
    return _REPR.repr(value)


def one_line(text: str) -> str:
    """``text`` with its line breaks and terminal control characters escaped, as Python
    writes them (``\\n``, ``\\x1b``): a name from a catalog never breaks a line, or a
    terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _kind(value: Any) -> str:
    return {list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


class _Shape:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def _wrong(self, where: str, wanted: str, value: Any) -> None:
        self.problems.append(f"{where} should be {wanted}, not {_kind(value)} {shown(value)}")

    def mapping(self, value: Any, where: str) -> dict[Any, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self._wrong(where, "a mapping", value)
            return {}
        return value

    def listing(self, value: Any, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self._wrong(where, "a list", value)
            return []
        return value

    def scalar(self, value: Any, where: str) -> bool:
        if isinstance(value, (list, dict)):
            self._wrong(where, "a text or a number", value)
            return False
        return True

    def items(self, value: Any, where: str) -> list[dict[Any, Any]]:
        """A list of mappings; the wrong ones said and left out."""
        found = []
        for index, item in enumerate(self.listing(value, where)):
            if isinstance(item, dict):
                found.append(item)
            else:
                self._wrong(f"{where}[{index}]", "a mapping", item)
        return found

    def metadata(self, value: Any, where: str) -> None:
        for key, item in self.mapping(value, f"{where} metadata").items():
            self.scalar(item, f"{where} metadata {shown(key)}")

    def named(self, item: dict[Any, Any], key: str, what: str, index: int) -> str:
        """How an entry is named in a problem: by its ``key`` when that is a scalar."""
        value = item.get(key)
        if value is not None and self.scalar(value, f"{what}[{index}] {key}"):
            return f"{what.rstrip('s')} {shown(value)}"
        return f"{what}[{index}]"


def workflow_problems(document: dict[Any, Any]) -> list[str]:
    """What in a workflow (and its embedded catalogs) has a type the schema forbids."""
    shape = _Shape()
    shape.scalar(document.get("name"), "name")
    shape.metadata(document.get("metadata"), "the workflow's")
    for index, job in enumerate(shape.items(document.get("jobs"), "jobs")):
        where = shape.named(job, "id", "jobs", index)
        shape.scalar(job.get("name"), f"{where} name")
        for position, argument in enumerate(shape.listing(job.get("arguments"),
                                                          f"{where} arguments")):
            shape.scalar(argument, f"{where} arguments[{position}]")
        shape.metadata(job.get("metadata"), where)
        for position, use in enumerate(shape.items(job.get("uses"), f"{where} uses")):
            file = shape.named(use, "lfn", f"{where} uses", position)
            shape.scalar(use.get("type"), f"{file} type")
            shape.scalar(use.get("stageOut"), f"{file} stageOut")
            shape.metadata(use.get("metadata"), file)
    _replicas(shape, document.get("replicaCatalog"), "replicaCatalog")
    _transformations(shape, document.get("transformationCatalog"), "transformationCatalog")
    _sites(shape, document.get("siteCatalog"), "siteCatalog")
    return shape.problems


def catalog_problems(document: Any, kind: str) -> list[str]:
    """What in a replica, transformation or site catalog file has the wrong type."""
    shape = _Shape()
    {"replica": _replicas, "transformation": _transformations, "site": _sites}[kind](
        shape, document, "")
    return shape.problems


def summary(problems: list[str]) -> str:
    """The first problem, on one line, and how many more there are."""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{problems[0]}{more}"


def _prefixed(prefix: str, key: str) -> str:
    return f"{prefix} {key}" if prefix else key


def _replicas(shape: _Shape, catalog: Any, prefix: str) -> None:
    catalog = shape.mapping(catalog, prefix or "the catalog")
    where = _prefixed(prefix, "replicas")
    for index, replica in enumerate(shape.items(catalog.get("replicas"), where)):
        name = shape.named(replica, "lfn", where, index)
        for position, pfn in enumerate(shape.items(replica.get("pfns"), f"{name} pfns")):
            shape.scalar(pfn.get("pfn"), f"{name} pfns[{position}] pfn")
            shape.scalar(pfn.get("site"), f"{name} pfns[{position}] site")
        shape.metadata(replica.get("metadata"), name)


def _transformations(shape: _Shape, catalog: Any, prefix: str) -> None:
    catalog = shape.mapping(catalog, prefix or "the catalog")
    where = _prefixed(prefix, "transformations")
    for index, entry in enumerate(shape.items(catalog.get("transformations"), where)):
        name = shape.named(entry, "name", where, index)
        for position, site in enumerate(shape.items(entry.get("sites"), f"{name} sites")):
            shape.scalar(site.get("name"), f"{name} sites[{position}] name")


def _sites(shape: _Shape, catalog: Any, prefix: str) -> None:
    catalog = shape.mapping(catalog, prefix or "the catalog")
    where = _prefixed(prefix, "sites")
    for index, site in enumerate(shape.items(catalog.get("sites"), where)):
        name = shape.named(site, "name", where, index)
        for position, directory in enumerate(shape.items(site.get("directories"),
                                                         f"{name} directories")):
            place = f"{name} directories[{position}]"
            shape.scalar(directory.get("type"), f"{place} type")
            shape.scalar(directory.get("path"), f"{place} path")
            for server, entry in enumerate(shape.items(directory.get("fileServers"),
                                                       f"{place} fileServers")):
                shape.scalar(entry.get("url"), f"{place} fileServers[{server}] url")
        profiles = shape.mapping(site.get("profiles"), f"{name} profiles")
        for namespace, values in profiles.items():
            for key, value in shape.mapping(values, f"{name} profiles {shown(namespace)}"
                                            ).items():
                shape.scalar(value, f"{name} profiles {shown(namespace)} {shown(key)}")
