"""`scaling-study serve`: the study service (pages and JSON API) on uvicorn.

Only argparse at import time: FastAPI, pandas and Ray load when the command runs.
"""
from __future__ import annotations

import gc
import os

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8300


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="browse, watch, steer, submit and export studies in a browser and over a JSON API",
        description="Serve every sweep and run under RESULTS_ROOT folders (or object-store URIs): live study "
                    "pages, stop buttons, submission of search spaces to Ray, exports, and the JSON API of "
                    "docs/api.md. Loopback only unless --host names another interface (then a token is required).")
    p.add_argument("roots", nargs="*", metavar="RESULTS_ROOT",
                   help="folders or URIs (s3://bucket/sweeps) holding sweeps and runs (default: sweeps runs)")
    p.add_argument("--address", default=None,
                   help="the Ray cluster's Job Submission API for submissions, e.g. http://HOST:8265 "
                        "(default: start a local Ray on the first submission)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--token", default=None,
                   help="required when --host is not loopback (default: $SCALING_STUDY_TOKEN); clients send "
                        "`Authorization: Bearer TOKEN` or open a page once with ?token=TOKEN")
    p.add_argument("--device-profile", action="append", default=[], metavar="FILE",
                   help="a device profile measured on the GPU projected (`scaling-study bench profile --out FILE`), "
                        "offered by the recommendation panel beside the named ones, by the file's name; repeatable")
    p.set_defaults(func=main)


def main(args) -> int:
    import uvicorn

    from scaling_study.service.app import DEFAULT_ROOTS, create_app
    from scaling_study.service.http import server_config
    from scaling_study.service.security import TOKEN_ENV

    token = args.token or os.environ.get(TOKEN_ENV) or None
    roots = args.roots or list(DEFAULT_ROOTS)
    app = create_app(roots, address=args.address, token=token, host=args.host, device_profiles=args.device_profile)
    # What is loaded by now (the libraries, the app) lives as long as the process: kept out of
    # the garbage collector's passes, which a root of many studies makes frequent.
    gc.freeze()
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"scaling-study service: http://{shown}:{port}/  (roots: {', '.join(roots)}"
          f"{'; send the token' if token else ''})", flush=True)
    uvicorn.Server(server_config(app)).run(sockets=[sock])
    return 0


def _bind(host: str, port: int):
    """A listening socket on host:port (port 0: a free one), so the URL printed is the real one."""
    import socket

    from scaling_study.errors import UserError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"--host {host} --port {port}: cannot listen there ({exc.strerror}); "
                        "choose another --port (0: any free one)") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
