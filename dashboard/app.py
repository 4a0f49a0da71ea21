"""The app factory and the server entry point.

``create_app(corpus_path)`` builds a fresh :class:`dash.Dash` on one corpus (browser tests start one per
test); ``serve(...)`` runs it with debug off, bound to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import dash
from dash import DiskcacheManager
from flask import Response, abort

from semcontrib.dashboard import callbacks, layout
from semcontrib.dashboard.query import CorpusQuery

logger = logging.getLogger(__name__)

CSS = """
.hint { color: #666; font-size: 12px; }
.region-filter { margin-bottom: 2px; }
.region-filter .rc-slider, .region-filter .dash-slider { margin: 2px 0 6px 0; }
"""


def _add_image_routes(server: object, query: CorpusQuery) -> None:
    """Images are served by corpus image id only; an unknown id is a 404 and never reaches a path."""

    def photo(image_id: str) -> Response:
        data = query.photo_jpeg(image_id)
        if data is None:
            abort(404)
        return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    def thumb(image_id: str) -> Response:
        data = query.thumbnail(image_id)
        if data is None:
            abort(404)
        return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    def overlay(head: str, method: str, image_id: str) -> Response:
        if head not in query.heads or method not in query.methods or query.known_id(image_id) is None:
            abort(404)
        data = query.overlay_png(image_id, head, method)
        if data is None:
            abort(404)
        return Response(data, mimetype="image/png", headers={"Cache-Control": "max-age=3600"})

    add = server.add_url_rule  # type: ignore[attr-defined]
    add("/corpus/photo/<image_id>", "corpus_photo", photo)
    add("/corpus/thumb/<image_id>", "corpus_thumb", thumb)
    add("/corpus/overlay/<head>/<method>/<image_id>", "corpus_overlay", overlay)


class SpawnDiskcacheManager(DiskcacheManager):
    """Runs background jobs in *spawned* processes.

    Dash's manager forks the threaded server; a fork taken while another thread holds a lock inside
    Arrow, BLAS or OpenMP (pandas 3 keeps strings in Arrow) leaves the child deadlocked. A spawned job
    starts clean and re-opens the corpus (see ``CorpusQuery.__getstate__``).
    """

    def call_job_fn(self, key: Any, job_fn: Any, args: Any, context: Any) -> Any:
        import multiprocess

        process = multiprocess.get_context("spawn").Process(
            target=job_fn, args=(key, self._make_progress_key(key), args, context))
        process.start()
        return process.pid


def create_app(corpus_path: str | Path, cache_dir: str | Path | None = None) -> dash.Dash:
    """A dashboard on the corpus at ``corpus_path``.

    Parameters
    ----------
    corpus_path : a corpus directory written by ``semcontrib analyze`` or ``semcontrib demo``.
    cache_dir : where background jobs and embeddings are cached (``diskcache``); a new temporary
        directory when None.
    """
    import diskcache

    cache_dir = Path(cache_dir or tempfile.mkdtemp(prefix="semcontrib-dashboard-"))
    query = CorpusQuery(corpus_path, cache_dir=cache_dir)
    manager = SpawnDiskcacheManager(diskcache.Cache(str(cache_dir / "jobs")))
    app = dash.Dash(__name__, title=f"semcontrib · {query.root.name}", background_callback_manager=manager,
                    suppress_callback_exceptions=True, assets_ignore=".*")
    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + CSS + "</style>")
    app.layout = layout.build(query)
    callbacks.register(app, query, manager)
    _add_image_routes(app.server, query)
    return app


def serve(corpus_path: str | Path, host: str = "127.0.0.1", port: int = 8050) -> None:
    """Run the dashboard (debug off). Binds 127.0.0.1 unless another host is given."""
    app = create_app(corpus_path)
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("the dashboard is reachable from other machines on %s:%d", host, port)
    print(f"semcontrib dashboard on http://{host}:{port}/ (Ctrl+C stops it)")
    app.run(host=host, port=port, debug=False)
