"""semcontrib: which semantic regions of an image made each head of a classifier decide as it did.

Python API (the CLI does the same)::

    from semcontrib import analyze, open_corpus
    report = analyze("photos/", "corpus/", methods=["lrp", "gradcam", "ig"], regions="grid")
    corpus = open_corpus("corpus/")
    table = corpus.contribution_table(head="nature", method="lrp", wide=True)

    # your own torch model (dict, tuple or single-tensor logits), see semcontrib.wrap
    from semcontrib import wrap_model
    analyze("photos/", "corpus/", model=wrap_model(net, heads={"animal": ["cat", "dog"]}, input_size=224))
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["analyze", "open_corpus", "export_table", "wrap_model", "__version__"]


def __getattr__(name: str) -> Any:  # lazy: importing the package does not import torch
    if name == "analyze":
        from semcontrib.pipeline import analyze

        return analyze
    if name == "open_corpus":
        from semcontrib.corpus import open_corpus

        return open_corpus
    if name == "export_table":
        from semcontrib.export import export_table

        return export_table
    if name == "wrap_model":
        from semcontrib.wrap import wrap_model

        return wrap_model
    raise AttributeError(name)
