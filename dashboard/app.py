"""The app factory and the server entry point.

``create_app(corpus_path)`` builds a fresh :class:`dash.Dash` on one corpus (browser tests start one per
test); ``serve(...)`` runs it with debug off, bound to 127.0.0.1 unless told otherwise — binding any
other address needs ``allow_remote=True`` (``--allow-remote``) and is logged as a warning, because the
dashboard has no authentication.

Hardening: request bodies are capped (Flask ``MAX_CONTENT_LENGTH``), every response carries
``X-Content-Type-Options: nosniff``, images are served by corpus image id only (and only from files
inside the corpus's store, see :class:`~semcontrib.dashboard.query.CorpusQuery`).
"""

from __future__ import annotations

import atexit
import io
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import dash
from dash import DiskcacheManager
from flask import Response, abort

from semcontrib.dashboard import callbacks, layout
from semcontrib.dashboard import ids as I
from semcontrib.dashboard.query import CorpusQuery

logger = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# The largest callback request: a state upload (4 MB as base64) plus the selections in the page
# (a bit mask of N/8 bytes each, at most 50) at a million images.
MAX_REQUEST_BYTES = 24_000_000
# A background job whose page has not polled it for this long is stopped (the page was closed); a
# hidden tab still polls about once a minute.
ORPHAN_S = 90.0

CSS = """
.hint { color: #666; font-size: 12px; }
.region-filter { margin-bottom: 2px; }
.region-filter .rc-slider, .region-filter .dash-slider { margin: 2px 0 6px 0; }
/* Dash 4 hides a range slider's number boxes in containers under 300 px (the sidebar): keep them, small,
   so every filter shows its bounds and they can be typed */
.sidebar .dash-slider-container .dash-range-slider-min-input,
.sidebar .dash-slider-container .dash-range-slider-max-input { display: inline-block !important;
  width: 5.2em !important; min-width: 0 !important; font-size: 11px; padding: 1px 2px; }
.trust-table td, .trust-table th, .validity-table td, .validity-table th { border: 1px solid #ccc;
  padding: 2px 8px; font-size: 13px; }
"""
# The table's thumbnail cells (dash-ag-grid looks cell renderers up by name in this object).
GRID_JS = """
var dagcomponentfuncs = (window.dashAgGridComponentFunctions = window.dashAgGridComponentFunctions || {});
dagcomponentfuncs.ThumbRenderer = function (props) {
  return React.createElement('img', {src: props.value, style: {height: '44px'}, alt: ''});
};
"""

# The scatter's lasso (issue 20 item 4). Plotly's own lasso tests every WebGL point on each mouse move and
# ends with a relayout that redraws them all (over 10 s per gesture at 100,000 points in software WebGL).
# When the scatter's drag mode is "lasso", this takes the gesture before Plotly sees it (a capturing
# listener on the document): the mouse path is drawn as an SVG line over the plot, nothing is tested while
# it moves, and on release the polygon (data coordinates, through the axes' own pixel-to-data mapping) is
# written once into the lasso-input store, for the server to test against its copy of the embedding. A
# double click (or Escape) clears it at once. Plotly never redraws. ``window.semcontribLasso`` holds the
# last polygon (for tests); ``window.semcontribLassoOff = true`` gives the gesture back to Plotly (the
# benchmark's baseline).
LASSO_JS = """
(function () {
  const MIN_POINTS = 3;
  let drawing = null;
  function plot(target) {
    const box = target && target.closest && target.closest('#__SCATTER__ .nsewdrag');
    const g = box && box.closest('.js-plotly-plot');
    return g && g._fullLayout && g._fullLayout.dragmode === 'lasso' && !window.semcontribLassoOff ? [g, box] : null;
  }
  function overlay(g) {
    let svg = g.querySelector('svg.semcontrib-lasso');
    if (!svg) {
      svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
      svg.setAttribute('class', 'semcontrib-lasso');
      svg.style.cssText = 'position:absolute;left:0;top:0;width:100%;height:100%;pointer-events:none;z-index:5';
      const line = document.createElementNS('http://www.w3.org/2000/svg', 'polygon');
      line.setAttribute('style', 'fill:rgba(0,0,0,0.05);stroke:#222;stroke-width:1.5;stroke-dasharray:4 3');
      svg.appendChild(line);
      g.style.position = 'relative';
      g.appendChild(svg);
    }
    return svg;
  }
  function send(value) {
    window.semcontribLasso = value;
    if (window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props('__STORE__', {data: value});
    }
  }
  function clear(g) {
    overlay(g).firstChild.setAttribute('points', '');
    send(null);
  }
  document.addEventListener('mousedown', function (e) {
    const found = e.button === 0 ? plot(e.target) : null;
    if (!found) { return; }
    e.preventDefault(); e.stopPropagation();
    const [g, box] = found, br = box.getBoundingClientRect();
    drawing = {g: g, box: br, px: [[e.clientX, e.clientY]]};
    overlay(g).firstChild.setAttribute('points', '');
  }, true);
  document.addEventListener('mousemove', function (e) {
    if (!drawing) { return; }
    e.preventDefault(); e.stopPropagation();
    drawing.px.push([e.clientX, e.clientY]);
    const gr = drawing.g.getBoundingClientRect();
    overlay(drawing.g).firstChild.setAttribute('points',
      drawing.px.map(p => (p[0] - gr.left) + ',' + (p[1] - gr.top)).join(' '));
  }, true);
  document.addEventListener('mouseup', function (e) {
    if (!drawing) { return; }
    e.preventDefault(); e.stopPropagation();
    const d = drawing, fl = d.g._fullLayout, xa = fl.xaxis, ya = fl.yaxis;
    drawing = null;
    if (d.px.length < MIN_POINTS) { clear(d.g); return; }
    const x = d.px.map(p => xa.p2d(p[0] - d.box.left)), y = d.px.map(p => ya.p2d(p[1] - d.box.top));
    send({key: fl.meta && fl.meta.key, lasso: {x: x, y: y}});
  }, true);
  document.addEventListener('dblclick', function (e) {
    const found = plot(e.target);
    if (!found) { return; }
    e.preventDefault(); e.stopPropagation();
    clear(found[0]);
  }, true);
  document.addEventListener('keydown', function (e) {
    const g = document.querySelector('#__SCATTER__ .js-plotly-plot');
    if (e.key === 'Escape' && g && g.querySelector('svg.semcontrib-lasso')) { clear(g); }
  });
})();
""".replace("__SCATTER__", I.SCATTER).replace("__STORE__", I.LASSO_INPUT)


class RemoteBindError(ValueError):
    """Binding a non-loopback address without ``allow_remote``."""


def placeholder_png(size: tuple[int, int] = (240, 180)) -> bytes:
    """A grey PNG saying "no photo" (``size``: width, height): shown for an image of the corpus whose display
    file is missing, instead of the browser's broken-image icon."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", size, (236, 236, 236))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, size[0] - 1, size[1] - 1), outline=(190, 190, 190))
    try:  # large enough to read in a 96 px thumbnail
        font: Any = ImageFont.load_default(size=max(12, size[1] // 6))
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    draw.text((size[0] // 2, size[1] // 2), "no photo", fill=(110, 110, 110), anchor="mm", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _add_image_routes(server: Any, query: CorpusQuery) -> None:
    """Images are served by corpus image id only; an unknown id is a 404 and never reaches a path. A known
    image without a display file gets :func:`placeholder_png` (not cached, so a restored file shows)."""
    placeholder = placeholder_png()

    def image(data: bytes | None, image_id: str, mimetype: str) -> Response:
        if data is not None:
            return Response(data, mimetype=mimetype, headers={"Cache-Control": "max-age=3600"})
        if query.known_id(image_id) is None:
            abort(404)
        return Response(placeholder, mimetype="image/png", headers={"Cache-Control": "no-store"})

    def photo(image_id: str) -> Response:
        return image(query.photo_jpeg(image_id), image_id, "image/jpeg")

    def thumb(image_id: str) -> Response:
        return image(query.thumbnail(image_id), image_id, "image/jpeg")

    def overlay(head: str, method: str, image_id: str) -> Response:
        if head not in query.heads or method not in query.methods or query.known_id(image_id) is None:
            abort(404)
        return image(query.overlay_png(image_id, head, method), image_id, "image/png")

    add = server.add_url_rule
    add("/corpus/photo/<image_id>", "corpus_photo", photo)
    add("/corpus/thumb/<image_id>", "corpus_thumb", thumb)
    add("/corpus/overlay/<head>/<method>/<image_id>", "corpus_overlay", overlay)


def _harden(server: Any) -> None:
    server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES

    @server.after_request
    def _headers(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        return response


class JobWatch:
    """When each background job's page last asked about it (pure bookkeeping, times in seconds).

    A page polls its running jobs every 250 ms (Dash's ``interval``); a browser throttles a hidden tab's
    timers to about once a minute, so a job is *orphaned* — its page closed or gone — only after
    ``orphan_s`` seconds without a poll.

    Examples
    --------
    >>> w = JobWatch(orphan_s=90)
    >>> w.started(11, now=0.0); w.started(12, now=0.0); w.seen(11, now=80.0)
    >>> w.orphans(now=100.0)
    [12]
    >>> w.orphans(now=200.0)
    [11]
    """

    def __init__(self, orphan_s: float) -> None:
        if not orphan_s > 0:
            raise ValueError(f"orphan_s must be a positive number of seconds, got {orphan_s!r}")
        self.orphan_s = float(orphan_s)
        self._last: dict[int, float] = {}
        self._lock = threading.Lock()

    def started(self, pid: int, now: float) -> None:
        with self._lock:
            self._last[int(pid)] = now

    def seen(self, pid: int, now: float) -> None:
        with self._lock:
            if int(pid) in self._last:
                self._last[int(pid)] = now

    def forget(self, pid: int) -> None:
        with self._lock:
            self._last.pop(int(pid), None)

    def orphans(self, now: float) -> list[int]:
        """The jobs not asked about for ``orphan_s`` seconds (forgotten once returned)."""
        with self._lock:
            out = [pid for pid, t in self._last.items() if now - t > self.orphan_s]
            for pid in out:
                del self._last[pid]
        return out


class SpawnDiskcacheManager(DiskcacheManager):
    """Runs background jobs in *spawned* processes, and stops the jobs of a closed page.

    Dash's manager forks the threaded server; a fork taken while another thread holds a lock inside
    Arrow, BLAS or OpenMP (pandas 3 keeps strings in Arrow) leaves the child deadlocked. A spawned job
    starts clean and re-opens the corpus (see ``CorpusQuery.__getstate__``).

    Dash asks the manager whether a job runs (``job_running``) on each poll of its page; a job whose page
    has not polled for ``orphan_s`` seconds (:class:`JobWatch`) is terminated by a daemon thread that
    looks every ``orphan_s / 4`` seconds (a t-SNE for a closed tab does not run on for minutes).
    """

    def __init__(self, cache: Any, orphan_s: float = ORPHAN_S) -> None:
        super().__init__(cache)
        self.watch = JobWatch(orphan_s)
        self._reaper: threading.Thread | None = None

    def call_job_fn(self, key: Any, job_fn: Any, args: Any, context: Any) -> Any:
        import multiprocess

        process = multiprocess.get_context("spawn").Process(
            target=job_fn, args=(key, self._make_progress_key(key), args, context))
        process.start()
        self.watch.started(process.pid, time.monotonic())
        self._start_reaper()
        return process.pid

    def job_running(self, job: Any) -> bool:
        running = bool(super().job_running(job))
        if job is not None:
            if running:
                self.watch.seen(int(job), time.monotonic())
            else:
                self.watch.forget(int(job))
        return running

    def reap(self, now: float | None = None) -> list[int]:
        """Terminate the orphaned jobs (:meth:`JobWatch.orphans`); returns their process ids."""
        pids = self.watch.orphans(time.monotonic() if now is None else now)
        for pid in pids:
            logger.info("stopping background job %d: its page stopped asking for it", pid)
            self.terminate_job(pid)
        return pids

    def _start_reaper(self) -> None:
        if self._reaper is not None and self._reaper.is_alive():
            return

        def loop() -> None:
            while True:
                try:
                    time.sleep(self.watch.orphan_s / 4)
                    self.reap()
                except SystemExit:  # the server thread is being stopped (as dash's test server does)
                    return
                except Exception:  # never let the watcher die: log and look again
                    logger.exception("the background-job watcher failed")

        self._reaper = threading.Thread(target=loop, name="semcontrib-job-reaper", daemon=True)
        self._reaper.start()


def _jobs_dir(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir) / "jobs"
    tmp = Path(tempfile.mkdtemp(prefix="semcontrib-dashboard-jobs-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # job results only; embeddings live in the corpus
    return tmp


def create_app(corpus_path: str | Path, cache_dir: str | Path | None = None, edit: bool = False) -> dash.Dash:
    """A dashboard on the corpus at ``corpus_path``.

    Parameters
    ----------
    corpus_path : a corpus directory written by ``semcontrib analyze`` or ``semcontrib demo``.
    cache_dir : where background jobs keep their results; a temporary directory (removed at exit) when
        None. Embeddings are cached in the corpus folder (``CORPUS/dashboard/``) either way.
    edit : edit mode (``--edit``): the "Edit regions" tab and its callbacks (``edit_ui``); without it
        the dashboard is read-only and has no callback that writes.
    """
    import diskcache

    query = CorpusQuery(corpus_path)
    manager = SpawnDiskcacheManager(diskcache.Cache(str(_jobs_dir(cache_dir))))
    app = dash.Dash(__name__, title=f"semcontrib · {query.root.name}", background_callback_manager=manager,
                    suppress_callback_exceptions=True, assets_ignore=".*")
    app.index_string = app.index_string.replace(
        "{%css%}", "{%css%}<style>" + CSS + "</style><script>" + GRID_JS + LASSO_JS + "</script>")
    if edit:  # region editing (issue 21): the layout is rebuilt per page load, so that a reload after
        # "Apply" shows the re-opened corpus (new vocabulary, filters)
        from semcontrib.dashboard import edit_ui

        app.layout = lambda: edit_ui.attach(layout.build(query), query)
        edit_ui.register(app, query)
    else:
        app.layout = layout.build(query)
    callbacks.register(app, query, manager)
    _add_image_routes(app.server, query)
    _harden(app.server)
    return app


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback ``host`` unless ``allow_remote``; warn when it is allowed."""
    if host in LOOPBACK:
        return
    if not allow_remote:
        raise RemoteBindError(
            f"refusing to bind {host!r}: the dashboard has no authentication and would be reachable from other "
            f"machines; bind 127.0.0.1 (the default), or pass --allow-remote if that is what you want")
    logger.warning("the dashboard is reachable from other machines on %s, without authentication", host)


def serve(corpus_path: str | Path, host: str = "127.0.0.1", port: int = 8050, allow_remote: bool = False,
          edit: bool = False) -> None:
    """Run the dashboard (debug off). Binds 127.0.0.1 unless another host is given with ``allow_remote``;
    ``edit``: edit mode (region editing, see :func:`create_app`)."""
    check_host(host, allow_remote)
    app = create_app(corpus_path, edit=edit)
    if host not in LOOPBACK:
        print(f"WARNING: the dashboard on {host}:{port} is reachable from other machines, without authentication")
    print(f"semcontrib dashboard on http://{host}:{port}/ (Ctrl+C stops it)")
    app.run(host=host, port=port, debug=False)
