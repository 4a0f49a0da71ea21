"""The semcontrib dashboard: cluster, filter, rank, compare and export images by region contributions.

Modules, one concept each:

* :mod:`dashboard.query`   — the one module that reads the corpus (read-only, cached per view key);
* :mod:`dashboard.views`   — pure functions on arrays and frames (filters, ranking, statistics, embedding);
* :mod:`dashboard.overlay` — the signed heatmap overlay and region outlines of one photograph (PNG bytes);
* :mod:`dashboard.figures` — plotly figure dicts built from view results;
* :mod:`dashboard.layout`  — the component tree; :mod:`dashboard.ids` — every component id;
* :mod:`dashboard.callbacks` — wiring only, each callback body is one call;
* :mod:`dashboard.app`     — ``create_app(corpus_path)`` and ``serve(...)``;
* :mod:`dashboard.cli`     — the ``semcontrib dashboard`` subcommand.

Nothing here imports torch or the model, attribution and pipeline modules.
"""
