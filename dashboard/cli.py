"""``semcontrib dashboard CORPUS [--host 127.0.0.1] [--port 8050] [--allow-remote] [--edit]``."""

from __future__ import annotations

import argparse
from typing import Any


def run(args: argparse.Namespace) -> int:
    from semcontrib.dashboard.app import serve

    serve(args.corpus, host=args.host, port=args.port, allow_remote=args.allow_remote, edit=args.edit)
    return 0


def register(subparsers: Any) -> None:
    """Add the ``dashboard`` subcommand to the ``semcontrib`` parser."""
    p = subparsers.add_parser("dashboard", help="explore a corpus in the browser (Dash)")
    p.add_argument("corpus", help="a corpus directory (from `semcontrib analyze` or `semcontrib demo`)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow binding an address other machines can reach (the dashboard has no login)")
    p.add_argument("--edit", action="store_true",
                   help="edit mode: draw and save region edits (CORPUS/annotations/edits.json) and recompute the "
                        "edited images; without it the dashboard is read-only")
    p.set_defaults(func=run)
