"""Before a workflow runs: everything Globus will need, checked up front.

    from pegasus_globus.preflight import check

    report = check("workflow.yml", site_catalog="sites.yml")
    if not report.ok:
        raise SystemExit(report.text())
    workflow.plan(submit=True)

For every go:// URL the run will touch (input replicas, the sites' scratch and output storage,
timer metadata) it checks the login (a Transfer token, refreshable, Timers when the workflow
registers timers), each collection (it exists, answers, has its data_access consent, a session
recent enough for a high-assurance one, an ``https`` token where the bridge moves data), each
input (it exists, a file or a directory as its URL says) with one listing per directory, each
place written to (it exists as a directory, or can be created), and the timer metadata by the
rules ``pegasus-globus-timer register`` applies, with the timers' own data_access consents.
Each problem is one line: where in the workflow, what, and the command that fixes it. It only
reads: listings, endpoint documents, and the user's identity and consents.
"""

from __future__ import annotations

import difflib
import os
import posixpath
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from ..scopes import (
    AUTH_RS,
    TIMERS_RS,
    TIMERS_SCOPE,
    TRANSFER_RS,
    https_access,
    init_command,
    transfer_scope,
)
from ..timers.shape import one_line
from ..transfer.urls import parse_go_url
from .catalogs import CatalogError, Run, read_run
from .listings import (
    COLLECTION_WIDE,
    CONSENT,
    DENIED,
    MISSING,
    NOT_A_DIRECTORY,
    OUTSIDE,
    SESSION,
    THREADS,
    Failure,
    Listings,
    classify,
    retry_config,
)

__all__ = ["CatalogError", "Problem", "Report", "check"]

LOGIN = "\0login"  # stands for the one login command that fixes every token problem
OUTSIDE_FIX = "correct the URL: go://<collection uuid>/<absolute path>, with no .. above its root"
STAGING_RECIPE = ("stage through a Globus collection instead: a site whose scratch is a "
                  "collection (pegasus-globus-setup snippets --scratch-collection)")


@dataclass(frozen=True)
class Problem:
    """One thing that would fail: where in the workflow, what, and the command that fixes it."""

    where: str
    what: str
    fix: str

    def line(self) -> str:
        return one_line(f"{self.where}: {self.what}; fix: {self.fix}")


@dataclass
class Report:
    workflow: str
    problems: list[Problem] = field(default_factory=list)
    inputs: int = 0
    collections: int = 0
    listings: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        checked = (f"{self.inputs} go:// input(s) in {self.listings} listing(s), "
                   f"{self.collections} collection(s)")
        if self.ok:
            return f"{self.workflow}: ready for Globus ({checked})"
        return f"{self.workflow}: {len(self.problems)} problem(s) ({checked})"

    def text(self) -> str:
        return "\n".join([*(p.line() for p in self.problems), one_line(self.summary())])

    def as_dict(self) -> dict[str, Any]:
        return {"workflow": self.workflow, "ok": self.ok,
                "problems": [asdict(p) for p in self.problems], "inputs": self.inputs,
                "collections": self.collections, "listings": self.listings}


def check(workflow: Any, site_catalog: Any = None, replica_catalog: Any = None,
          properties: Any = None, token_store: Any = None) -> Report:
    """Check a workflow's Globus needs before it is planned; changes nothing.

    :param workflow: the workflow YAML's path, or a ``Pegasus.api.Workflow``
    :param site_catalog: a path or ``Pegasus.api.SiteCatalog`` (default: as the planner finds
        it: embedded in the workflow, ``pegasus.catalog.site.file``, ``sites.yml``)
    :param replica_catalog: a path or ``Pegasus.api.ReplicaCatalog``, read with the
        workflow's own (default: ``pegasus.catalog.replica.file``, ``replicas.yml``)
    :param properties: a path, mapping or ``Pegasus.api.Properties`` (default:
        ``pegasus.properties`` in the working directory)
    :param token_store: a :class:`~pegasus_globus.token_store.TokenStore` (default: the
        user's, ``$PEGASUS_GLOBUS_CONFIG`` or ``~/.pegasus/globus.conf``)
    :raises CatalogError: an input cannot be read (the message names it)
    """
    run = read_run(workflow, site_catalog, replica_catalog, properties)
    shown = os.fspath(workflow) if isinstance(workflow, (str, os.PathLike)) else ""
    return _Check(run, shown, token_store).run()


class _Check:
    def __init__(self, run: Run, workflow_path: str, token_store: Any) -> None:
        from ..token_store import TokenStore

        self.run_ = run
        self.workflow_path = workflow_path or "WORKFLOW.yml"
        self.store = token_store or TokenStore()
        self.report = Report(run.name, inputs=len(run.inputs))
        self.documents: dict[str, dict[str, Any]] = {}
        self.said: set[tuple[str, ...]] = set()  # (collection, [directory,] kind) said once
        self.listings: Listings | None = None

    def problem(self, where: str, what: str, fix: str) -> None:
        self.report.problems.append(Problem(where, what, fix))

    def run(self) -> Report:
        run = self.run_
        for where, what in run.bad_urls:
            self.problem(where, what, "correct the URL: go://<collection uuid>/<absolute path>")
        for line in run.timer_problems:
            where, _, what = line.partition(": ")
            self.problem(f"timer metadata, {where}", what or line,
                         f"correct the metadata, then pegasus-globus-timer register "
                         f"{self.workflow_path} --dry-run")
        collections = run.collections()
        self.report.collections = len(collections)
        if collections or run.registers_timers:
            self._globus(collections)
        return self._finished()

    # -- Globus ------------------------------------------------------------------------------

    def _globus(self, collections: dict[str, str]) -> None:
        import globus_sdk

        from ..token_store import DamagedStore, TokenStoreError

        try:
            tokens = self.store.tokens()
        except DamagedStore as error:  # online-init will not overwrite it: moved aside first
            self.problem("Globus login", f"{self.store.path} is not a valid token file "
                         f"({error.reason})", self.store.aside(LOGIN))
            return
        except TokenStoreError as error:
            self.problem("Globus login", str(error), LOGIN)
            return
        exposure = self.store.exposure()
        if exposure:
            self.problem("token file", *exposure)
        if not self._tokens_usable(tokens):
            return
        try:
            client = globus_sdk.TransferClient(
                authorizer=self.store.authorizer(TRANSFER_RS), retry_config=retry_config())
            client.authorizer.get_authorization_header()  # refreshed once, before threads
            self.listings = Listings(client)
            self._collections(client, collections)
            self._inputs()
            self._places()
            self._timer_consents(tokens)
        except globus_sdk.NetworkError as error:
            self.problem("Globus", f"cannot reach it ({error.__class__.__name__})",
                         "check the network, or GLOBUS_SDK_SERVICE_URL_TRANSFER and "
                         "GLOBUS_SDK_SERVICE_URL_AUTH")
            return
        except globus_sdk.AuthAPIError as error:  # a refresh token revoked, say
            self.problem("Globus login", f"Globus Auth refused to refresh the token "
                         f"({error.http_status} {error.code})", LOGIN)
            return
        except globus_sdk.GlobusAPIError as error:
            if error.http_status != 401:
                raise
            self.problem("Globus login", f"Globus Transfer rejected the token ({error.code})",
                         LOGIN)
            return
        except TokenStoreError as error:
            self.problem("Globus login", str(error), LOGIN)
            return
        finally:
            if self.listings:
                self.report.listings = self.listings.calls
        self._https(tokens)

    def _tokens_usable(self, tokens: dict[str, Any]) -> bool:
        """Token problems; whether Transfer can be called at all."""
        transfer = tokens.get(TRANSFER_RS)
        path = self.store.path
        if transfer is None:
            self.problem("Globus login", f"not logged in (no Transfer token in {path})", LOGIN)
            return False
        wanted = [("Transfer", transfer)]
        if self.run_.registers_timers:
            timers = tokens.get(TIMERS_RS)
            if timers is None:
                self.problem("Globus Timers (the workflow registers timers)",
                             "not consented: the registration job would fail", LOGIN)
            else:
                wanted.append(("Timers", timers))
        for service, token in wanted:
            if token.refreshable:
                continue
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(token.expires_at))
            state = "expired" if token.expired() else "expires"
            self.problem(f"Globus {service} token",
                         f"{state} at {when} and cannot be refreshed, so a run still going "
                         "then fails (log in with --permanent)", LOGIN)
        return transfer.refreshable or not transfer.expired()

    def _collections(self, client: Any, collections: dict[str, str]) -> None:
        """Each collection's endpoint document, several at a time."""
        import globus_sdk

        def document(collection: str) -> Any:
            try:
                return client.get_endpoint(collection).data
            except globus_sdk.GlobusAPIError as error:
                if error.http_status == 401:
                    raise  # the token, not the collection: said once, by the caller
                return error

        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            answers = list(pool.map(document, collections))
        for (collection, where), answer in zip(collections.items(), answers):
            if not isinstance(answer, globus_sdk.GlobusAPIError):
                self.documents[collection] = answer
            else:
                failure = classify(answer)
                if failure.kind == MISSING:
                    self.problem(where, f"collection {collection} does not exist",
                                 "correct the collection UUID (find it with globus endpoint "
                                 "search NAME, or on app.globus.org)")
                else:
                    self._collection_failure(collection, where, failure)

    def _collection_failure(self, collection: str, where: str, failure: Failure) -> None:
        if (collection, failure.kind) in self.said:
            return
        self.said.add((collection, failure.kind))
        document = self.documents.get(collection, {})
        if failure.kind == CONSENT:
            self.problem(where, f"collection {collection} needs your consent to its "
                         "data_access scope (a mapped collection)", LOGIN)
        elif failure.kind == SESSION:
            timeout = document.get("authentication_timeout_mins")
            limit = f" of {timeout} minutes" if timeout else ""
            self.problem(where, f"collection {collection} is high-assurance and wants a login "
                         f"more recent than its authentication timeout{limit}", LOGIN)
        elif failure.kind == DENIED:
            self.problem(where, f"collection {collection} refuses you access "
                         f"({failure.detail})", "ask the collection's administrator for "
                         "access, or use another collection")
        else:
            self.problem(where, f"collection {collection} does not answer a listing "
                         f"({failure.detail})", "try again later, or ask the collection's "
                         "administrator")

    def _denied(self, collection: str, directory: str, where: str, failure: Failure) -> None:
        """A directory the collection will not list for you: said once per directory, not
        per collection, as Globus denies paths one by one too (a collection's path
        restrictions, the storage's permissions: 403 EndpointPermissionDenied either way)."""
        if (collection, directory, DENIED) in self.said:
            return
        self.said.add((collection, directory, DENIED))
        shown = f"go://{collection}{directory.rstrip('/')}/"
        self.problem(where, f"collection {collection} denies you access to {shown} "
                     f"({failure.detail})", "ask the collection's administrator for access to "
                     "that directory, or use one you can reach")

    def _usable(self, collection: str) -> bool:
        return collection in self.documents

    def _inputs(self) -> None:
        assert self.listings is not None
        located = []
        for item in self.run_.inputs:
            url = parse_go_url(item.url)
            if not self._usable(url.collection):
                continue
            path = url.path.rstrip("/") or "/"
            located.append((item, url, posixpath.dirname(path) or "/", posixpath.basename(path)))
        self.listings.fetch((url.collection, directory) for _, url, directory, _ in located)
        for item, url, directory, name in located:
            listing = self.listings.get(url.collection, directory)
            shown = f"go://{url.collection}{directory.rstrip('/')}/"
            if isinstance(listing, Failure):
                if listing.kind == OUTSIDE:
                    self.problem(item.where, f"{item.url} is outside collection "
                                 f"{url.collection}", OUTSIDE_FIX)
                elif listing.kind == DENIED:
                    self._denied(url.collection, directory, item.where, listing)
                elif listing.kind in COLLECTION_WIDE or listing.kind not in (
                        MISSING, NOT_A_DIRECTORY):
                    self._collection_failure(url.collection, item.where, listing)
                elif listing.kind == MISSING:
                    self.problem(item.where, f"{item.url} does not exist: no directory {shown}",
                                 "correct its replica in the replica catalog, or put the "
                                 "file there")
                else:
                    self.problem(item.where, f"{item.url} does not exist: {shown} is a file",
                                 "correct its replica in the replica catalog")
                continue
            kind = listing.get(name) if name else "dir"
            if kind is None:
                alike = [entry for entry, what in listing.items()  # a name of its kind
                         if (what == "dir") == item.expects_directory]
                close = difflib.get_close_matches(name, alike, n=1, cutoff=0.6)
                if close:
                    self.problem(item.where, f"{item.url} does not exist ({shown} has "
                                 f"{close[0]})", f"correct its replica to {shown}{close[0]}"
                                 + ("/" if item.expects_directory else ""))
                else:
                    self.problem(item.where, f"{item.url} does not exist", "correct its "
                                 "replica in the replica catalog, or put the file there")
            elif kind == "dir" and not item.expects_directory:
                self.problem(item.where, f"{item.url} is a directory, but the job expects a "
                             "file", f"correct its replica to {item.url}/ to stage the whole "
                             "directory, or name a file in it")
            elif kind != "dir" and item.expects_directory:
                self.problem(item.where, f"{item.url} is a file, but its URL ends with / (a "
                             "directory)", f"correct its replica to {item.url.rstrip('/')}")

    def _places(self) -> None:
        """Each place written to exists as a directory, or its nearest existing ancestor is
        one (the handler's mkdir makes the missing ones)."""
        assert self.listings is not None
        places = [(p, parse_go_url(p.url)) for p in self.run_.places]
        places = [(p, url) for p, url in places if self._usable(url.collection)]
        self.listings.fetch((url.collection, url.path.rstrip("/") or "/") for _, url in places)
        for place, url in places:
            path = url.path.rstrip("/") or "/"
            while True:
                listing = self.listings.get(url.collection, path)
                if not isinstance(listing, Failure):
                    break
                if listing.kind == NOT_A_DIRECTORY:
                    shown = ("it" if path == (url.path.rstrip("/") or "/")
                             else f"go://{url.collection}{path}")
                    self.problem(place.where, f"{place.url} cannot be written: {shown} is a "
                                 "file, not a directory", "choose another directory (site "
                                 "catalog or metadata), or move the file away")
                    break
                if listing.kind == OUTSIDE:
                    self.problem(place.where, f"{place.url} is outside collection "
                                 f"{url.collection}", OUTSIDE_FIX)
                    break
                if listing.kind == DENIED:
                    self._denied(url.collection, path, place.where, listing)
                    break
                if listing.kind != MISSING:
                    self._collection_failure(url.collection, place.where, listing)
                    break
                parent = posixpath.dirname(path.rstrip("/")) or "/"
                if parent == path:
                    break
                path = parent

    def _timer_consents(self, tokens: dict[str, Any]) -> None:
        """Timers run transfers with consents of their own: a collection whose data_access
        Transfer needs (it said so, or the login gave it under Transfer) needs it under
        Timers too, or the timer turns inactive at its first run. Read from Auth's consents,
        as globus-sdk's ConsentForest does: the tokens name scopes without dependencies."""
        if not self.run_.timers or TIMERS_RS not in tokens or AUTH_RS not in tokens:
            return
        import globus_sdk

        auth = globus_sdk.AuthClient(authorizer=self.store.authorizer(AUTH_RS))
        try:
            forest = auth.get_consents(auth.userinfo()["sub"]).to_forest()
        except globus_sdk.GlobusAPIError:
            return  # Auth shows no consents to this login: nothing to tell from them
        for timer in self.run_.timers:
            for collection in dict.fromkeys((timer.source, timer.destination)):
                document = self.documents.get(collection, {})
                if document.get("entity_type") != "GCSv5_mapped_collection" or document.get(
                        "high_assurance"):
                    continue  # no data_access scope to consent to
                under_transfer = (collection, CONSENT) in self.said or \
                    forest.meets_scope_requirements(transfer_scope([collection]))
                under_timers = forest.meets_scope_requirements(
                    f"{TIMERS_SCOPE}[{transfer_scope([collection])}]")
                if under_transfer and not under_timers:
                    self.problem(f"timer '{timer.name}'", f"Globus Timers has no consent to "
                                 f"collection {collection}'s data_access, so the timer would "
                                 "turn inactive at its first run", LOGIN)

    def _https(self, tokens: dict[str, Any]) -> None:
        for collection, why in self.run_.https.items():
            document = self.documents.get(collection)
            if document is None:
                continue
            if not document.get("https_server"):
                kind = document.get("entity_type") or "it"
                self.problem(why, f"the bridge moves this through collection {collection}'s "
                             f"HTTPS server, and {kind} serves none", STAGING_RECIPE)
                continue
            token = tokens.get(collection)
            if token is None or https_access(collection) not in token.scopes.split() or (
                    token.expired() and not token.refreshable):
                self.problem(why, f"the bridge moves this through collection {collection}'s "
                             f"HTTPS server, and there is no token for its https scope "
                             f"in {self.store.path}", LOGIN)

    # -- the one login command ---------------------------------------------------------------

    def _finished(self) -> Report:
        collections, https = self._login_collections()
        login = init_command(collections, timers=self.run_.registers_timers, https=https)
        self.report.problems = list(dict.fromkeys(
            Problem(p.where, p.what, p.fix.replace(LOGIN, login))
            for p in self.report.problems))
        return self.report

    def _login_collections(self) -> tuple[list[str], list[str]]:
        """What a login asks for: data_access (and https) on mapped GCSv5 collections that
        are not high-assurance (globus-cli's rule for data_access), https alone on the other
        collections the bridge reaches. Never data_access on a guest collection: Auth has no
        such scope for one. Collections whose kind is unknown (not logged in yet) are left
        out, as a guest collection in --collections fails the whole login; only those the
        last login consented to are kept, and the next check names what the others need."""
        data, https = [], []
        consented = self._consented()
        for collection in [*self.run_.collections(), *self.run_.https]:
            document = self.documents.get(collection)
            if document is None:
                if not self.documents and collection in consented:
                    data.append(collection)
                continue
            if document.get("entity_type") == "GCSv5_mapped_collection" and not document.get(
                    "high_assurance"):
                data.append(collection)
            elif collection in self.run_.https:
                https.append(collection)
        return list(dict.fromkeys(data)), list(dict.fromkeys(https))

    def _consented(self) -> set[str]:
        """The collections the last login gave data_access to (Auth accepted them)."""
        from ..token_store import TokenStoreError

        try:
            return set(self.store.meta().get("collections", "").split())
        except TokenStoreError:
            return set()
