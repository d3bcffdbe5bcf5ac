"""Sphinx-Gallery image scraper for figures made without pyplot.

fastsae.viz draws on matplotlib ``Figure`` objects of its own (the Agg canvas,
no pyplot state), so the default scraper, which asks pyplot for its open
figures, does not see them. This one collects every ``Figure`` bound to a
name in the example's globals that it has not saved yet and pyplot does not
manage (those are the default scraper's).
"""
from __future__ import annotations

from pathlib import PurePosixPath

_seen: dict[str, list] = {}   # figures already saved, per example (kept alive: ids stay unique)


def figures(block, block_vars, gallery_conf, **kwargs):
    from matplotlib.figure import Figure
    from sphinx_gallery.scrapers import figure_rst

    seen = _seen.setdefault(str(block_vars.get("src_file", "")), [])
    new = []
    for v in block_vars["example_globals"].values():
        if isinstance(v, Figure) and not any(v is s for s in seen):
            if getattr(v.canvas, "manager", None) is None:
                new.append(v)
            else:                          # pyplot's: the default scraper's, now and later
                seen.append(v)
    paths = []
    for fig, path in zip(new, block_vars["image_path_iterator"]):
        seen.append(fig)
        fig.savefig(path, dpi=90)
        paths.append(PurePosixPath(path))
    return figure_rst(paths, gallery_conf["src_dir"])
