"""go:// <-> file:// through a GCSv5 collection's HTTPS server.

Stock Pegasus moves Globus data only between two collections. A GCSv5 collection also serves
its files over HTTPS (the endpoint document's ``https_server``; a token for the collection's
``https`` scope): GET reads a file, PUT writes one. That is how a go:// replica reaches a site
whose scratch is a plain directory, and how a job's output goes back.

Guarantees, as for the go->go path: a download lands under its final name only when complete
(a temporary file beside it, then a rename), sizes are checked against the collection's own
listing (an upload's after it landed: one listing per directory for a batch of them, see
:meth:`HttpsBridge.check_uploads`), retries repeat the same idempotent GET or PUT, and every
failure is one line naming the URL and what to run. GCS HTTPS serves no checksum: checksums
are Pegasus' integrity checks (:mod:`.integrity`), on the file as it landed or as it was
pulled back.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import posixpath
import stat
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar
from urllib.parse import quote

from ..files import NEW_FILE_MODE, hidden_beside
from ..scopes import init_command
from .urls import GoUrl
from .watch import TransferFailed

if TYPE_CHECKING:
    from ..token_store import TokenStore
    from .operations import GlobusTransfers

T = TypeVar("T")
RETRY_DELAYS = (1.0, 2.0, 4.0)  # seconds between tries of one GET or PUT
CHUNK = 1 << 20  # bytes read and written at a time
LISTING_LIMIT = 100_000  # entries of one listing: Globus' own default and most
_PART_NUMBERS = itertools.count(1)  # with the pid: a part file of its own, where no locks are
STAGING_RECIPE = ("stage through a Globus collection instead: a site whose scratch is a "
                  "collection (pegasus-globus-setup snippets --scratch-collection)")


class HttpsBridge:
    """Copies between go:// URLs and local files over the collections' HTTPS servers.

    :param transfers: the Transfer client and its mkdir, for endpoint documents and listings
    :param store: where the collections' ``https`` tokens are (pegasus-globus-online-init
        --collections asks for them)
    :param sleep: waits between retries (tests pass a fake)
    """

    def __init__(self, transfers: GlobusTransfers, store: TokenStore,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.transfers = transfers
        self.store = store
        self._sleep = sleep
        self._local = threading.local()  # a requests session per thread
        self._lock = threading.Lock()  # endpoint documents, authorizers, directories made
        self._servers: dict[str, str] = {}
        self._authorizers: dict[str, Any] = {}
        self._made: set[tuple[str, str]] = set()
        self._environment: dict[str, dict[str, Any]] = {}
        # (collection, directory) -> {file name: size}: one listing per directory downloaded
        # from, instead of a stat per file
        self._listings: dict[tuple[str, str], dict[str, int | None]] = {}
        self._gates: dict[tuple[str, ...], threading.Lock] = {}  # see _asked_once
        self._unreachable: dict[tuple[str, ...], Exception] = {}
        self._mkdir_lock = threading.Lock()

    def run(self, jobs: list[tuple[Any, ...]], threads: int = 4,
            work: Callable[..., Any] | None = None) -> list[tuple[tuple[Any, ...], Any]]:
        """``work(*job)`` for each job, ``threads`` at a time (as pegasus-transfer's
        --threads); returns each job with its result or its error. ``work`` defaults to a
        download or an upload, for ``("download"|"upload", go URL, local path)`` jobs, the
        result its bytes: the uploads' sizes are checked once all have landed
        (:meth:`check_uploads`)."""
        from concurrent.futures import ThreadPoolExecutor

        def one(job: tuple[Any, ...]) -> Any:
            try:
                return (work or self._move_unchecked)(*job)
            except Exception as error:  # one job's failure is reported, never the batch's end
                return error
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            results = list(pool.map(one, jobs))
        if work is None:
            landed = [index for index, (job, result) in enumerate(zip(jobs, results))
                      if job[0] == "upload" and not isinstance(result, Exception)]
            checked = self.check_uploads([(jobs[index][1], results[index]) for index in landed])
            for index, error in zip(landed, checked):
                results[index] = error or results[index]
        return list(zip(jobs, results))

    def _move_unchecked(self, direction: str, location: GoUrl, local: Path) -> int:
        return (self.download(location, local) if direction == "download"
                else self.upload(local, location, check=False))

    def https_server(self, collection: str) -> str:
        """The collection's HTTPS base URL; a TransferFailed naming the alternative if none."""
        def ask() -> str:
            document = self.transfers.client.get_endpoint(collection)
            server = document.get("https_server")
            if not server:
                kind = document.get("entity_type") or "this collection"
                raise NoHttpsAccess(
                    f"go://{collection}: {kind} serves no HTTPS (GCSv4 and Globus Connect "
                    f"Personal collections do not), so it cannot reach a file:// site: "
                    f"{STAGING_RECIPE}")
            with self._lock:
                self._servers[collection] = server.rstrip("/")
                return self._servers[collection]
        return self._asked_once(("endpoint", collection),
                                lambda: self._servers.get(collection), ask)

    def download(self, source: GoUrl, target: Path) -> int:
        """``source`` into the local file ``target`` (its directory is made); returns bytes."""
        url = self._url(source)
        _make_directory(target.parent, f"{source} -> {target}")
        expected = self._listed_size(source)
        try:
            fd, temporary = _part_file(target)
        except OSError as error:  # no new file in the directory: read-only, full, ...
            raise TransferFailed(
                f"{source} -> {target}: cannot write in {target.parent} ({error.strerror}): "
                "make it writable, or choose another destination") from None
        handle, landed = os.fdopen(fd, "wb"), False
        try:
            def fetch() -> None:
                handle.seek(0)  # a try before this one's bytes, or a killed download's
                handle.truncate()
                with self._request("GET", source, url, stream=True) as answer:
                    for chunk in answer.iter_content(CHUNK):
                        handle.write(chunk)
            self._retried(source, fetch)
            # no fsync (4 ms a file here): the rename makes the file appear whole to any
            # reader, as the stock tools' downloads (wget, curl) do; a machine that crashes
            # loses the job's scratch with it, and Pegasus runs the job again
            handle.flush()
            size = handle.tell()
            if expected is not None and size != expected:
                raise TransferFailed(f"{source}: got {size} bytes, the collection lists "
                                     f"{expected}; not kept")
            os.replace(temporary, target)
            landed = True
            _remove_leftover_parts(target, temporary)
        except OSError as error:  # a full disk, say: name the file, not only the errno
            raise TransferFailed(f"{source} -> {target}: {error.strerror or error}") from None
        finally:
            try:  # removed while still locked: see _part_file
                if not landed:  # (a directory that refuses it keeps it: the error above says)
                    with contextlib.suppress(OSError):
                        os.unlink(temporary)
            finally:
                handle.close()
        return size

    def upload(self, source: Path, target: GoUrl, check: bool = True) -> int:
        """The local file ``source`` to ``target`` (its directory is made); returns bytes.
        ``check=False`` leaves the size check to the caller's :meth:`check_uploads`, which
        checks a batch of uploads with one listing per directory instead of a stat each."""
        url = self._url(target)
        before = _upload_source(source, target)
        size = before.st_size
        directory = (target.collection, posixpath.dirname(target.path) or "/")
        with self._mkdir_lock:  # once per directory, not per file or per thread
            if directory not in self._made:
                self.transfers.mkdir(directory[0], [directory[1]])
                self._made.add(directory)

        def send() -> Any:
            # O_NONBLOCK: a named pipe put in the file's place since its stat would block the
            # open until a writer came (a regular file ignores the flag)
            fd = _local(lambda: os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
            with open(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise _SourceChanged("no longer a regular file")
                if not size and _local(lambda: handle.read(1)):  # see _Unsized
                    raise _Unsized
                # requests sends an empty file chunked, having no length to give it: the
                # server refuses that (411), and an empty output is a file like any other;
                # a body is made for each request: one refused for a stale token is sent again
                return self._request("PUT", target, url, body=lambda: (
                    _Exactly(handle, size) if size else b""))
        ended_early = unsized = False
        try:
            self._retried(target, send)
        except _SourceChanged:
            ended_early = True  # said below, with the file as it is now
        except _Unsized:
            unsized = True  # said below, unless the file was written meanwhile
        except _Unreadable as error:  # not Python's "[Errno 13] ...: '<path>'"
            raise TransferFailed(f"{source} -> {target}: {error.reason}") from None
        try:
            after: os.stat_result | None = source.stat()
        except FileNotFoundError:
            after = None
        except OSError as error:
            raise TransferFailed(f"{source} -> {target}: {error.strerror or error}") from None
        if after is None or _identity(after) != _identity(before):
            now = "gone" if after is None else f"{after.st_size} bytes"
            raise TransferFailed(
                f"{source} -> {target}: the file changed while it was uploaded ({size} bytes "
                f"when the upload began, {now} after): upload it once the job that writes it "
                "has ended")
        if unsized or ended_early:  # read otherwise than stat says, yet unchanged
            raise TransferFailed(
                f"{source} -> {target}: the file system gives it {size} bytes, yet it reads "
                f"{'more' if unsized else 'fewer'} (a /proc or /sys file): copy it to a "
                "regular file and upload that")
        if check:
            failed = self.check_uploads([(target, size)])[0]
            if failed:
                raise failed
        return size

    def check_uploads(self, uploads: list[tuple[GoUrl, int]]) -> list[TransferFailed | None]:
        """Each upload's size (the bytes sent) against what the collection lists now, after
        the uploads landed: a TransferFailed where they differ or the file is not there,
        else None. A directory that got several is listed once (the listing kept for later
        downloads from it), one that got one file is stat'ed, as is a file the listing lacks
        (past its end)."""
        import globus_sdk

        directories: dict[tuple[str, str], list[int]] = {}
        for index, (target, _) in enumerate(uploads):
            directories.setdefault(_directory_of(target), []).append(index)
        results: list[TransferFailed | None] = [None] * len(uploads)
        # once Globus Transfer could not be reached (globus-sdk's retries spent), the rest
        # are not checked: each call would wait those retries out again
        unreachable: globus_sdk.NetworkError | None = None
        for key, indexes in directories.items():
            listing: dict[str, int | None] = {}
            if len(indexes) > 1 and unreachable is None:
                try:
                    listing = _sizes(self.transfers.client.operation_ls(
                        key[0], path=key[1], limit=LISTING_LIMIT))
                except globus_sdk.TransferAPIError:
                    pass  # then per file: the stat's words
                except globus_sdk.NetworkError as error:
                    unreachable = error
            landed: dict[str, int | None] = {}
            for index in indexes:
                target, size = uploads[index]
                name = posixpath.basename(target.path)
                try:
                    if name not in listing and unreachable is not None:
                        raise unreachable
                    landed[name] = listing[name] if name in listing else self._size(target)
                except globus_sdk.NetworkError as error:
                    unreachable = error
                    results[index] = TransferFailed(f"{target}: its size cannot be checked "
                                                    f"after the upload: {_unreached(error)}")
                    continue
                except TransferFailed as error:
                    results[index] = error
                    continue
                if landed[name] != size:
                    results[index] = TransferFailed(f"{target}: the collection lists "
                                                    f"{landed[name]} bytes after the upload "
                                                    f"of {size}")
            with self._lock:  # a listing taken before holds the files' old sizes, or none
                if listing:
                    self._listings[key] = listing
                if key in self._listings:
                    self._listings[key].update(landed)
        return results

    # -- the machinery ---------------------------------------------------------------------

    def _url(self, location: GoUrl) -> str:
        return self.https_server(location.collection) + quote(location.path)

    def _size(self, location: GoUrl) -> int | None:
        """The size the collection's listing gives, None where it has none."""
        import globus_sdk

        try:
            entry = self.transfers.client.operation_stat(location.collection, location.path)
        except globus_sdk.TransferAPIError as error:
            if error.http_status == 404:
                raise TransferFailed(f"{location}: no such file on the collection") from None
            if error.code == "EndpointPermissionDenied":
                from .operations import DENIED

                raise TransferFailed(f"{location}: {DENIED}") from None
            raise TransferFailed(f"{location}: Globus Transfer refused a stat "
                                 f"({error.http_status} {error.code})") from None
        return entry.get("size")

    def _listed_size(self, location: GoUrl) -> int | None:
        """The size the listing of the file's directory gives (listed once per directory);
        a file the listing lacks (it came later, or lies past the listing's end) is stat'ed."""
        import globus_sdk

        key = _directory_of(location)
        try:
            listing = self._listing(key)
            name = posixpath.basename(location.path)
            if name in listing:
                return listing[name]
            return self._size(location)
        except globus_sdk.NetworkError as error:
            raise TransferFailed(f"{location}: its size cannot be looked up: "
                                 f"{_unreached(error)}") from None

    def _asked_once(self, key: tuple[str, ...], kept: Callable[[], T | None],
                    ask: Callable[[], T]) -> T:
        """What ``kept()`` (called under the lock) has, else what ``ask()`` asks Globus for
        and keeps: asked by the first thread that needs ``key`` (an endpoint document, a
        directory's listing) while the others wait, then find it kept. Each thread asked on
        its own: 4 listings of 10,000 entries where one does. A NetworkError the first one met
        (globus-sdk's retries spent) is the others' too, as they would each wait those retries
        out again, one after another."""
        import globus_sdk

        with self._lock:
            value = kept()
            gate = self._gates.setdefault(key, threading.Lock())
        if value is not None:
            return value
        with gate:
            with self._lock:
                value, unreachable = kept(), self._unreachable.get(key)
            if value is not None:
                return value
            if unreachable is not None:
                raise unreachable
            try:
                return ask()
            except globus_sdk.NetworkError as error:
                with self._lock:
                    self._unreachable[key] = error
                raise

    def _listing(self, key: tuple[str, str]) -> dict[str, int | None]:
        """The directory's sizes by name, listed once (see _asked_once)."""
        import globus_sdk

        def ask() -> dict[str, int | None]:
            try:
                listing = _sizes(self.transfers.client.operation_ls(
                    key[0], path=key[1], limit=LISTING_LIMIT))
            except globus_sdk.TransferAPIError:
                listing = {}  # say what is wrong per file, with the stat's words
            with self._lock:
                return self._listings.setdefault(key, listing)
        return self._asked_once(("listing", *key), lambda: self._listings.get(key), ask)

    def _authorizer(self, collection: str) -> Any:
        from ..token_store import TokenStoreError

        with self._lock:
            if collection not in self._authorizers:
                try:
                    self._authorizers[collection] = self.store.authorizer(
                        collection, fix=init_command([collection]))
                except TokenStoreError as error:
                    raise NoHttpsAccess(f"go://{collection}: {error}") from None
            return self._authorizers[collection]

    @property
    def _session(self) -> Any:
        if not hasattr(self._local, "session"):
            import requests

            self._local.session = requests.Session()
            self._local.session.trust_env = False  # read once per collection: _settings
            for scheme in ("http://", "https://"):
                self._local.session.mount(scheme, _large_blocks_adapter())
        return self._local.session

    def _settings(self, collection: str, url: str) -> dict[str, Any]:
        """The proxies and CA bundle the environment gives for the collection's server, as
        requests reads them: it did on every request, scanning os.environ (2 ms a file)."""
        with self._lock:
            if collection not in self._environment:
                import requests

                settings = requests.Session().merge_environment_settings(url, {}, None, None,
                                                                         None)
                self._environment[collection] = {key: settings[key]
                                                 for key in ("proxies", "verify", "cert")}
            return self._environment[collection]

    def _request(self, method: str, location: GoUrl, url: str,
                 body: Callable[[], Any] | None = None, **options: Any) -> Any:
        """One request, sent again once after a refresh where the token was stale; ``body``
        makes the request's body, anew for each sending."""
        authorizer = self._authorizer(location.collection)
        settings = self._settings(location.collection, url)
        for attempt in range(2):
            if body is not None:
                options["data"] = body()
            answer = self._session.request(method, url, headers={
                "Authorization": authorizer.get_authorization_header()}, timeout=60,
                **settings, **options)
            if answer.status_code != 401 or attempt or not hasattr(
                    authorizer, "handle_missing_authorization"):
                break
            authorizer.handle_missing_authorization()
        if answer.status_code in (401, 403):
            raise NoHttpsAccess(f"{location}: the collection refused HTTPS access "
                                 f"({answer.status_code}): run "
                                 f"{init_command([location.collection])}")
        if answer.status_code == 404 and method == "PUT":
            raise TransferFailed(f"{location}: the collection has no directory "
                                 f"{posixpath.dirname(location.path)} to write it in (missing, "
                                 "or a file)")
        if answer.status_code == 404:
            raise TransferFailed(f"{location}: no such file or directory on the collection")
        if answer.status_code >= 500 or answer.status_code == 429:
            raise _Transient(f"HTTPS server answered {_said(answer)}")
        if answer.status_code >= 400:
            raise TransferFailed(f"{location}: HTTPS server answered {_said(answer)}")
        return answer

    def _retried(self, location: GoUrl, call: Callable[[], Any]) -> Any:
        import requests

        for delay in (*RETRY_DELAYS, None):
            try:
                return call()
            # ChunkedEncodingError: the body ended before its Content-Length (the server
            # hung up mid-file), a dropped connection like any other
            except (_Transient, requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as error:
                if delay is None:
                    raise TransferFailed(f"{location}: {_reason(error)} (tried "
                                         f"{len(RETRY_DELAYS) + 1} times)") from None
            self._sleep(delay)
        raise AssertionError("unreachable")


# a part file is opened as a file of our own or not at all: never through a symbolic link
# (whose target would be written), nor waiting on a FIFO; O_NONBLOCK is dropped once it is ours
_PART_FLAGS = os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


def _part_file(target: Path) -> tuple[int, str]:
    """A file of its own beside ``target`` for one download to write, open and locked, and
    its path: ``.<name>.part``, or while other downloads hold that one, ``.<name>.2.part``,
    ``.<name>.3.part``, ...: the first that none holds, a killed download's leftover taken
    over. Each download renames only its own file: two into one target at once (two jobs
    staging into a shared directory) land one whole version. A name this download cannot take
    as a regular file of its own (a symbolic link, a directory, a FIFO, another user's file)
    is passed over for the next number.

    A download removes or renames its part file while it holds the lock (flock: held per open
    file, so two threads conflict too); a lock won on a file that by then has another name,
    or none, is let go and the name tried again. On a file system without locks each download
    writes a ``.<name>.<pid>-<n>.part`` of its own, created exclusively. An error creating a
    new one (a read-only directory, a full disk) is raised."""
    import fcntl

    for number in itertools.count(1):
        path = _numbered_part(target, number)
        while True:
            try:  # 0o666: the mode a new file gets (umask applies)
                fd, created = os.open(path, _PART_FLAGS | os.O_CREAT | os.O_EXCL, 0o666), True
            except FileExistsError:
                try:
                    fd, created = os.open(path, _PART_FLAGS), False
                except FileNotFoundError:  # removed meanwhile
                    continue
                except PermissionError:  # a leftover of ours made unwritable (mode 000)?
                    if _writable_again(path):
                        continue
                    break
                except OSError:  # not a file of ours to write: the next number
                    break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another download's, under way
                os.close(fd)
                break
            except OSError:  # no locks here (ENOLCK): nothing tells whose a file is
                os.close(fd)
                if created:
                    os.unlink(path)
                return _unshared_part_file(target)
            opened = os.fstat(fd)
            if not _still_named(opened, path):  # renamed or removed meanwhile: the name again
                os.close(fd)
                continue
            if _made_ours(fd, opened):
                return fd, path
            os.close(fd)  # a FIFO with a reader, a device, another user's file
            break
    raise AssertionError("unreachable")


def _made_ours(fd: int, opened: os.stat_result) -> bool:
    """Whether the locked ``fd`` is a regular file this download may write as its own (this
    user's, of no other name: a hard link's other name would be written): made blocking, with
    the mode a new file gets (a leftover of another mode is changed)."""
    if not _own_file(opened):
        return False
    try:
        if opened.st_mode & 0o777 != NEW_FILE_MODE:
            os.fchmod(fd, NEW_FILE_MODE)
    except OSError:  # a read-only file system, say
        return False
    os.set_blocking(fd, True)
    return True


def _still_named(opened: os.stat_result, path: str) -> bool:
    """Whether ``path`` still names the file ``opened`` describes: a download renames or
    removes its part file while it holds the lock another waited for."""
    try:
        return os.path.samestat(opened, os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
        return False


def _own_file(found: os.stat_result) -> bool:
    return (stat.S_ISREG(found.st_mode) and found.st_uid == os.geteuid()
            and found.st_nlink == 1)


def _writable_again(path: str) -> bool:
    """Give this user's part file that it cannot open for writing the mode a new file gets;
    says whether that changed anything. Through an O_PATH descriptor, so never the target of
    a link that replaced it meanwhile."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        found = os.fstat(fd)
        if not _own_file(found) or found.st_mode & 0o777 == NEW_FILE_MODE:
            return False
        os.chmod(f"/proc/self/fd/{fd}", NEW_FILE_MODE)  # the inode fd names
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _numbered_part(target: Path, number: int) -> str:
    return hidden_beside(target, "part" if number == 1 else f"{number}.part")


def _unshared_part_file(target: Path) -> tuple[int, str]:
    while True:  # created exclusively: no other download has it, whatever its pid
        path = hidden_beside(target, f"{os.getpid()}-{next(_PART_NUMBERS)}.part")
        with contextlib.suppress(FileExistsError):
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                           0o666), path  # 0o666: the mode a new file gets (umask applies)


def _remove_leftover_parts(target: Path, own: str) -> None:
    """Once ``target`` landed from ``own``: remove ``.<name>.2.part``, ``.<name>.3.part``, ...
    that no download holds, left by downloads killed while another held ``.<name>.part`` (a
    rerun takes that one over, but nothing would take these). Stops after two numbers in a
    row that are not there (its own counts as there): two failed opens, where none was left,
    and a number that landed between leftovers (three downloads at once) is looked past; a
    leftover behind two missing numbers (four at once, in a rare order) stays. Names that are
    no regular file of this user's, of no other name, are left as they are."""
    import fcntl

    missing = 0
    for number in itertools.count(2):
        path = _numbered_part(target, number)
        if path == own:
            missing = 0
            continue
        try:
            fd = os.open(path, _PART_FLAGS)
        except FileNotFoundError:
            missing += 1
            if missing == 2:
                return
            continue
        except OSError:  # a symbolic link, a directory, another user's: not ours to remove
            missing = 0
            continue
        missing = 0
        try:
            opened = os.fstat(fd)
            if _own_file(opened):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises while a download holds it
                if _still_named(opened, path):
                    os.unlink(path)  # while locked: see _part_file
        except OSError:  # held, or gone meanwhile
            pass
        finally:
            os.close(fd)


def _make_directory(directory: Path, what: str) -> None:
    """``directory`` and its parents, or a TransferFailed saying which of them is a file or a
    symbolic link to nothing (mkdir's words, "File exists", name neither)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        for path in reversed((directory, *directory.parents)):
            if path.is_symlink() and not path.exists():
                raise TransferFailed(
                    f"{what}: {path} is a symbolic link to {os.readlink(path)}, which does not "
                    "exist: make that directory, or remove the link") from None
            if path.exists() and not path.is_dir():
                raise TransferFailed(f"{what}: {path} is a file, not a directory: remove it "
                                     "or choose another destination") from None
        raise TransferFailed(f"{what}: cannot make the directory {directory}: "
                             f"{error.strerror or error}") from None


def _said(answer: Any) -> str:
    """A refusal's status and the server's words: a JSON body's ``message`` (a full disk, say),
    else the status line's reason."""
    try:
        message = answer.json().get("message")
    except Exception:  # no JSON object: an HTML page, an empty body
        message = None
    return f"{answer.status_code} {message if isinstance(message, str) else answer.reason}"


def _upload_source(source: Path, target: GoUrl) -> os.stat_result:
    """The stat of the file to upload; a TransferFailed where it is none."""
    try:
        status = source.stat()
    except OSError as error:
        raise TransferFailed(f"{source} -> {target}: {error.strerror or error}") from None
    if stat.S_ISDIR(status.st_mode):
        raise TransferFailed(f"{source} -> {target}: a directory: upload its files one by one")
    if not stat.S_ISREG(status.st_mode):
        kind = "a named pipe" if stat.S_ISFIFO(status.st_mode) else "a device or socket"
        raise TransferFailed(f"{source} -> {target}: {kind}, not a regular file: write the "
                             "output to a file")
    return status


def _identity(status: os.stat_result) -> tuple[int, ...]:
    """What changes when a file is written, truncated, replaced or rewritten by ``cp -p``
    (which puts the old mtime back, not the ctime); a write through a shared mapping to a page
    already dirty, or within one second where the file system keeps whole seconds, changes
    none of it (Pegasus' checksums, verify_checksum_remote, see those)."""
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns,
            status.st_ctime_ns)


class _Exactly:
    """The first ``size`` bytes of an open file, as a request body of that Content-Length
    (requests takes it from ``len``): a file that grows while it is sent does not push bytes
    past its length onto the connection, and one that shrinks raises _SourceChanged instead
    of leaving the server waiting for the rest."""

    def __init__(self, handle: Any, size: int) -> None:
        handle.seek(0)  # from the first byte, each time it is sent
        self._handle = handle
        self._left = size

    def __len__(self) -> int:
        return self._left

    def read(self, amount: int = -1) -> bytes:
        wanted = self._left if amount is None or amount < 0 else min(amount, self._left)
        data = _local(lambda: self._handle.read(wanted)) if wanted else b""
        if len(data) < wanted:
            raise _SourceChanged(f"ended {self._left - len(data)} bytes early")
        self._left -= len(data)
        return data


def _unreached(error: Exception) -> str:
    """Why Globus Transfer could not be reached: globus-sdk's words and the cause's."""
    cause = getattr(error, "underlying_exception", None)
    return f"Globus Transfer could not be reached ({error}" + (
        f": {_reason(cause)})" if cause is not None else ")")


def _reason(error: BaseException) -> str:
    """What went wrong, from an exception requests wraps around urllib3's: the innermost
    message (``Connection broken: IncompleteRead(...)``), not the tuples around it."""
    while error.args and isinstance(error.args[0], BaseException):
        error = error.args[0]
    if len(error.args) > 1 and isinstance(error.args[0], str):
        return error.args[0]
    return str(error)


def _directory_of(location: GoUrl) -> tuple[str, str]:
    return location.collection, posixpath.dirname(location.path) or "/"


def _sizes(listing: Any) -> dict[str, int | None]:
    """A directory listing's files and their sizes."""
    return {entry["name"]: entry.get("size") for entry in listing
            if entry.get("type") == "file"}


def _large_blocks_adapter() -> Any:
    """requests' adapter, sending a body from a file CHUNK bytes at a time, as a download is
    read, not urllib3's 16 KiB: 64 reads and writes per MiB, each of which let another thread
    take the interpreter, made an upload of 0.32 MB cost twice its download."""
    from requests.adapters import HTTPAdapter

    class LargeBlocks(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **options: Any) -> None:
            super().init_poolmanager(*args, blocksize=CHUNK, **options)

        def proxy_manager_for(self, proxy: str, **options: Any) -> Any:
            return super().proxy_manager_for(proxy, blocksize=CHUNK, **options)
    return LargeBlocks()


class NoHttpsAccess(TransferFailed):
    """This process cannot reach the collection over HTTPS: it serves none, or the login lacks
    (or was refused) its ``https`` scope."""


class _SourceChanged(Exception):
    """The local file being uploaded shrank under the upload."""


class _Unsized(Exception):
    """The local file has content where stat gives it 0 bytes, as /proc's files do: sent as
    0 bytes, it would land empty and pass the size check. (/sys gives its files 4096 bytes
    and fewer to read: the upload ends early, as for a file that shrank.)"""


class _Unreadable(Exception):
    """The local file could not be opened or read (permissions, an I/O error)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.strerror or str(error))
        self.reason = error.strerror or str(error)


def _local(operation: Callable[[], T]) -> T:
    """``operation()`` on the local file to upload; its OSError as _Unreadable, which no retry
    of the request takes for the network's."""
    try:
        return operation()
    except OSError as error:
        raise _Unreadable(error) from None


class _Transient(Exception):
    """Worth trying again: the HTTPS server was busy or failing."""
