"""Where runs and sweeps write: a local folder, a volume every node of a cluster mounts, or an
object store (s3://, gs://, abfs://, hdfs://) that pyarrow reaches.

Ray writes its checkpoints and Tune's experiment state to the same `storage_path` through
`pyarrow.fs`; `Loc` writes ours (records, trial tables, each trial's job, ASHA's rung state) the
same way, so a results folder on S3 holds everything a local one does. Credentials and endpoints
come from the usual places (`AWS_*` variables, `~/.aws`, `GOOGLE_APPLICATION_CREDENTIALS`, ...)
or from the URI's query string (`s3://bucket/results?endpoint_override=HOST:PORT&scheme=http`).
"""
from __future__ import annotations

import functools
import io
import os
import posixpath
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from scaling_study.errors import UserError

# Schemes pyarrow.fs resolves (FileSystem.from_uri); `file://` names a local folder.
URI_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs")
BUCKET_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss")  # the URI's first path part is a bucket/container
VALID = ("a folder path (on a cluster, one every node mounts), a file:// URI of one, or an object-store URI "
         f"({', '.join(s + '://' for s in URI_SCHEMES)}) such as s3://bucket/results")


def results_dir(value: str) -> str:
    """`value` as a results location: a path as it is, the path of a `file://` URI, or a URI of a
    file system pyarrow reaches (kept as it is). Raises ValueError, saying what is valid, for any
    other URI. Nothing is contacted here: `Loc.check_reachable` does that before a run starts."""
    if "://" not in value:
        return value
    url = urlparse(value)
    scheme = url.scheme.lower()
    if scheme == "file" and url.netloc in ("", "localhost") and not url.query:
        return unquote(url.path)
    if scheme in URI_SCHEMES:
        if not url.netloc:
            raise ValueError(f"{value!r}: a {scheme}:// URI names its bucket or host first ({scheme}://BUCKET/folder)")
        return value
    raise ValueError(f"{value!r}: {scheme}:// is not a file system results can be written to; give {VALID}")


def is_uri(value: str | os.PathLike) -> bool:
    return isinstance(value, str) and "://" in value and urlparse(value).scheme.lower() in URI_SCHEMES


def as_path(value: "str | os.PathLike | Loc") -> "Path | Loc":
    """A local path as it was given (so messages show what the user typed), a URI as a `Loc`.
    Both have the `Path` operations results need (`/`, name, parent, suffix, is_file, is_dir)."""
    if isinstance(value, Loc):
        return value.local if value.is_local else value
    return Loc(value) if is_uri(os.fspath(value)) else Path(value)


@functools.lru_cache(maxsize=16)
def _filesystem(base: str, query: str):
    """(file system, its path of `base`'s root) for `scheme://netloc` and a query string; cached,
    because resolving an S3 bucket's region is a network round trip."""
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(base + "/" + (f"?{query}" if query else ""))
    return fs, root.rstrip("/")


class Loc:
    """A file or folder of results: an absolute local path, or an object-store URI.

    Has the few `pathlib.Path` operations results need (`/`, `name`, `parent`, `is_file`,
    `is_dir`, reading and writing whole files, listing sub-folders); writes are atomic (a local
    file is written to a temporary name and renamed; an object store's PUT is all or nothing).
    """

    __slots__ = ("_base", "_path", "_query")

    def __init__(self, value: "str | os.PathLike | Loc"):
        if isinstance(value, Loc):
            self._base, self._path, self._query = value._base, value._path, value._query
            return
        value = results_dir(os.fspath(value))
        if is_uri(value):
            url = urlparse(value)
            self._base, self._query = f"{url.scheme}://{url.netloc}", url.query
            self._path = posixpath.normpath("/" + url.path.lstrip("/")) if url.path.strip("/") else ""
        else:
            self._base, self._query = None, ""
            self._path = str(Path(value).expanduser().resolve())

    @classmethod
    def _make(cls, base, path, query) -> "Loc":
        loc = object.__new__(cls)
        loc._base, loc._path, loc._query = base, path, query
        return loc

    # --- naming -------------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return self._base is None

    @property
    def local(self) -> Path:
        """The local path (only for a local `Loc`)."""
        if self._base is not None:
            raise ValueError(f"{self} is not a local path")
        return Path(self._path)

    def __fspath__(self) -> str:
        """Local `Loc`s pass wherever a path does; a URI must go through `fs`/`fs_path`."""
        if self._base is not None:
            raise TypeError(f"{self} is not a local path; read and write it through scaling_study.storage")
        return self._path

    def __truediv__(self, part: str) -> "Loc":
        if self._base is None:
            return Loc._make(None, str(Path(self._path) / part), "")
        return Loc._make(self._base, posixpath.normpath(f"{self._path}/{part}"), self._query)

    @property
    def name(self) -> str:
        return posixpath.basename(self._path) if self._base else Path(self._path).name

    @property
    def parent(self) -> "Loc":
        if self._base is None:
            return Loc._make(None, str(Path(self._path).parent), "")
        up = posixpath.dirname(self._path)
        return Loc._make(self._base, "" if up == "/" else up, self._query)  # "" is the bucket itself

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    def __str__(self) -> str:
        if self._base is None:
            return self._path
        return self._base + self._path + (f"?{self._query}" if self._query else "")

    def __repr__(self) -> str:
        return f"Loc({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Loc) and (self._base, self._path, self._query) == (other._base, other._path, other._query)

    def __hash__(self) -> int:
        return hash((self._base, self._path, self._query))

    # --- the file system ----------------------------------------------------------------------
    @property
    def fs(self):
        """The `pyarrow.fs.FileSystem` this lives on (what Ray's `storage_filesystem` takes)."""
        if self._base is None:
            import pyarrow.fs as pafs

            return pafs.LocalFileSystem()
        return _filesystem(self._base, self._query)[0]

    @property
    def fs_path(self) -> str:
        """The path on `fs` (for S3: bucket/key)."""
        if self._base is None:
            return self._path
        return _filesystem(self._base, self._query)[1] + self._path

    def _type(self):
        return self.fs.get_file_info(self.fs_path).type

    def exists(self) -> bool:
        import pyarrow.fs as pafs

        return self._type() != pafs.FileType.NotFound

    def is_file(self) -> bool:
        import pyarrow.fs as pafs

        return self._type() == pafs.FileType.File

    def is_dir(self) -> bool:
        import pyarrow.fs as pafs

        return self._type() == pafs.FileType.Directory

    def subdirs(self) -> list["Loc"]:
        """The folders directly inside, sorted by name; none when this is not a folder."""
        import pyarrow.fs as pafs

        if self._base is None:
            names = [c.name for c in self.local.iterdir() if c.is_dir()] if self.local.is_dir() else []
        else:
            infos = self.fs.get_file_info(pafs.FileSelector(self.fs_path, allow_not_found=True))
            names = [posixpath.basename(i.path) for i in infos if i.type == pafs.FileType.Directory]
        return [self / name for name in sorted(names)]

    def check_reachable(self, key: str) -> None:
        """Raise a UserError, naming `key`, when the file system cannot be reached or read here
        (missing bucket, no credentials): before a run starts rather than at its first record."""
        import pyarrow.fs as pafs

        if self._base is None:
            return
        try:
            fs, path = self.fs, self.fs_path
            # An object store answers "not found" for a key in a missing bucket, and refuses the
            # write later: ask about the bucket (container) itself.
            bucket = path.lstrip("/").split("/")[0] if self._base.split(":")[0].lower() in BUCKET_SCHEMES else None
            info = fs.get_file_info(bucket or path)
            missing = bucket is not None and info.type != pafs.FileType.Directory
        except Exception as exc:  # pyarrow raises OSError and ArrowException subclasses
            raise UserError(f"{key}: {self} cannot be reached from here ({str(exc).splitlines()[0]}); check "
                             "the URI and this machine's credentials for it") from None
        if missing:
            raise UserError(f"{key}: {self}: the bucket {bucket!r} does not exist or these credentials cannot "
                             "see it; create it first (results are not written to a new bucket)")

    # --- whole files --------------------------------------------------------------------------
    def read_bytes(self) -> bytes:
        if self._base is None:
            return self.local.read_bytes()
        with self.fs.open_input_stream(self.fs_path) as fh:
            return fh.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> "Loc":
        if self._base is None:
            path = self.local
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        else:
            with self.fs.open_output_stream(self.fs_path) as fh:
                fh.write(data)
        return self

    def write_text(self, text: str, encoding: str = "utf-8") -> "Loc":
        return self.write_bytes(text.encode(encoding))

    def upload_dir(self, local_dir: str | os.PathLike) -> None:
        """Replace this folder with a copy of `local_dir`."""
        import pyarrow.fs as pafs

        if self._base is None:
            raise ValueError("upload_dir is for object stores; move local folders instead")
        if self.exists():
            self.fs.delete_dir(self.fs_path)
        pafs.copy_files(str(Path(local_dir).resolve()), self.fs_path,
                        source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs)


def read_csv(loc: "str | os.PathLike | Loc", **kwargs):
    """`pandas.read_csv` of a local path or a URI."""
    import pandas as pd

    loc = Loc(loc)
    return pd.read_csv(loc.local if loc.is_local else io.BytesIO(loc.read_bytes()), **kwargs)


def write_csv(df, loc: "str | os.PathLike | Loc") -> Loc:
    """`df` (without its index) as CSV at a local path or a URI, all at once."""
    return Loc(loc).write_bytes(df.to_csv(index=False).encode("utf-8"))


def read_parquet(loc: "str | os.PathLike | Loc", **kwargs):
    import pandas as pd

    loc = Loc(loc)
    return pd.read_parquet(loc.local if loc.is_local else io.BytesIO(loc.read_bytes()), **kwargs)


def write_parquet(df, loc: "str | os.PathLike | Loc") -> Loc:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return Loc(loc).write_bytes(buf.getvalue())
