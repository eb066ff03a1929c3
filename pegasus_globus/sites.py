"""Site catalog entries that let stock Pegasus move go:// data: every data job stays go→go.

Stock ``pegasus-transfer`` has a Globus handler for go→go transfers, mkdir and remove, and
none for go→file. So the supported recipe declares the compute site's shared scratch (and the
output site's storage) with a ``go://<collection>`` file server: a Globus collection that
exposes the same directory the jobs see locally (Globus Connect Server or Personal on the
cluster's shared file system). The planner then makes go mkdir (create-dir), go→go stage-in and
stage-out, and go remove (cleanup) jobs, and the jobs read the files through the local path.

    from pegasus_globus.sites import globus_scratch_site, globus_storage_site

    sites = SiteCatalog().add_sites(
        globus_scratch_site("local", "<collection uuid>", "/scratch/me"),
        globus_storage_site("archive", "<collection uuid>", "/results"))
"""

from __future__ import annotations

from typing import Any

from .transfer.urls import parse_go_url


def go_url(collection: str, path: str = "/") -> str:
    """``go://<collection><path>`` without a trailing slash: Pegasus appends ``/<run dir>``."""
    return f"go://{collection}{'/' + path.strip('/') if path.strip('/') else ''}"


def _checked_go_url(collection: str, path: str) -> str:
    url = go_url(collection, path)
    parse_go_url(url + "/")  # a ValueError names a collection that is not a UUID
    return url


def globus_scratch_site(name: str, collection: str, directory: str,
                        collection_path: str = "/", **site_options: Any) -> Any:
    """A compute site whose shared scratch ``directory`` is served by Globus ``collection``.

    :param directory: the scratch directory as the jobs see it (absolute local path)
    :param collection_path: where ``directory`` is inside the collection (default ``/``: the
        collection's root is the directory, as a Globus Connect Server collection with that
        base path exposes it)
    :param site_options: passed to ``Pegasus.api.Site`` (``arch``, ``os_type``, ...)
    """
    from Pegasus.api import Directory, FileServer, Operation, Site

    scratch = Directory(Directory.SHARED_SCRATCH, directory).add_file_servers(
        FileServer(_checked_go_url(collection, collection_path), Operation.ALL))
    return Site(name, **site_options).add_directories(scratch)


def globus_storage_site(name: str, collection: str, path: str) -> Any:
    """An output site whose storage is ``path`` on Globus ``collection`` (for --output-sites)."""
    from Pegasus.api import Directory, FileServer, Operation, Site

    storage = Directory(Directory.SHARED_STORAGE, path).add_file_servers(
        FileServer(_checked_go_url(collection, path), Operation.ALL))
    return Site(name).add_directories(storage)
