"""Where runs and sweeps write: a folder, local or on a volume every node of a cluster mounts.

Records, trial tables, each trial's job and ASHA's rung state are written as files next to Ray's
own checkpoints, so the results folder must be a file system path; a `file://` URI names one.
Object stores (s3://, gs://, abfs://, hdfs://) are refused before anything starts rather than
being written to a local folder of that name.
"""
from __future__ import annotations

from urllib.parse import unquote, urlparse

VALID = "a folder path (every node of a cluster must mount it: NFS, a shared volume) or a file:// URI of one"


def results_dir(value: str) -> str:
    """`value` as a folder path: a path as it is, or the path of a `file://` URI.

    Raises ValueError, saying what is valid, for any other URI.
    """
    if "://" not in value:
        return value
    url = urlparse(value)
    if url.scheme.lower() == "file" and url.netloc in ("", "localhost") and not url.query:
        return unquote(url.path)
    raise ValueError(f"{value!r} is not supported: results (records, trial tables, ASHA's state) are written as "
                     f"files, so object-store URIs ({url.scheme}://) cannot hold them yet; give {VALID}")
