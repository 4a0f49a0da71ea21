"""The semcontrib dashboard: cluster, filter, rank, compare and export images by region contributions.

Modules, one concept each:

* :mod:`dashboard.query`   — the one module that reads the corpus (read-only; caches per view, and the
  embedding cache in the corpus folder);
* :mod:`dashboard.records` — the view, filters, weights and scatter options callbacks pass to panels;
* :mod:`dashboard.views`   — pure functions on arrays and frames (filters, ranking, statistics, embedding,
  point codes, trust table, table order, selections as bit masks);
* :mod:`dashboard.state`   — the saved dashboard state and its validation (untrusted input);
* :mod:`dashboard.overlay` — the signed heatmap overlay and region outlines of one photograph (PNG bytes);
* :mod:`dashboard.figures` — plotly figure dicts (typed arrays, density image) built from view results;
* :mod:`dashboard.layout`  — the component tree; :mod:`dashboard.ids` — every component id;
* :mod:`dashboard.panels`  — what each callback computes; :mod:`dashboard.callbacks` — wiring only, with
  grouped arguments, each callback body is one call;
* :mod:`dashboard.app`     — ``create_app(corpus_path)`` and ``serve(...)`` (hardening, loopback only
  unless allowed);
* :mod:`dashboard.cli`     — the ``semcontrib dashboard`` subcommand;
* :mod:`dashboard.synthetic` — a synthetic corpus (``semcontrib demo --synthetic N``, tests, benchmark);
* :mod:`dashboard.callback_client` — calls the callbacks over HTTP as a browser does (tests, benchmark).

Nothing here imports torch or the model, attribution and pipeline modules.
"""
