"""Inline code that names a dtp_eqx object links to its entry on the API page.

The pages write library names as plain inline code (`dtp_eqx.fit`, `fit(...)`,
`dtp_eqx.TrainConfig.method`), which reads the same in JupyterLab. When Sphinx reads a
page, each such literal becomes a cross-reference to the Python object documented in
api.md (`dtp_eqx.fit`), so that the rendered book links every one. An unresolvable
name is a nitpicky warning, which the book's `-W -n` build turns into a failure.
"""

from __future__ import annotations

import re

from docutils import nodes
from sphinx.addnodes import pending_xref

import dtp_eqx

# `dtp_eqx.name`, `name`, `name.attribute`, each optionally called: `fit(net, data)`
_LITERAL = re.compile(r"^(?:dtp_eqx\.)?([A-Za-z][A-Za-z0-9_]*)(?:\.[A-Za-z_]\w*)*(?:\(.*\))?$",
                      re.DOTALL)


def public_names() -> set[str]:
    """The names `import dtp_eqx` offers (those api.md documents)."""
    return {name for name in dir(dtp_eqx) if not name.startswith("_")}


def library_name(text: str, names: set[str]) -> str | None:
    """The dtp_eqx name an inline literal refers to, or None.

    A bare name (`fit`) counts only when it is called or is the whole literal; a name
    written with its module (`dtp_eqx.fit`) always does.
    """
    match = _LITERAL.match(text.strip())
    if match is None or match.group(1) not in names:
        return None
    return match.group(1)


def link_library_names(app, doctree) -> None:
    names = public_names()
    for literal in list(doctree.findall(nodes.literal)):
        if isinstance(literal.parent, (nodes.reference, pending_xref)):
            continue
        name = library_name(literal.astext(), names)
        if name is None:
            continue
        xref = pending_xref("", refdomain="py", reftype="obj", reftarget=f"dtp_eqx.{name}",
                            refexplicit=True, refwarn=True, refdoc=app.env.docname)
        literal.replace_self(xref)
        xref += literal


def setup(app):
    app.connect("doctree-read", link_library_names)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
