"""Copy the book's JavaScript assets from book/node_modules into the folders Sphinx serves.

`make book` runs `npm ci` (pinned by package.json and package-lock.json) and then this
script, so the rendered HTML loads MathJax, require.js and the widget manager from the
build itself and works offline. The copies live in git-ignored `book/_vendor/` (static
files) and `book/_extra/` (the widget manager's fonts, fetched by relative path). They are
never put in `book/_static/`: Jupyter Book adds every .js file found there to every page,
and the widget bundles would then run several times.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

BOOK = Path(__file__).resolve().parent
MODULES = BOOK / "node_modules"


def copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dest)


def main() -> int:
    manager = MODULES / "@jupyter-widgets" / "html-manager" / "dist"
    mathjax = MODULES / "mathjax" / "es5"
    needed = [manager / "embed-amd.js", MODULES / "requirejs" / "require.js",
              mathjax / "tex-mml-chtml.js"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        print(f"missing {missing}: run `npm ci --prefix book` first", file=sys.stderr)
        return 1
    vendor, extra = BOOK / "_vendor", BOOK / "_extra"
    copy(manager / "embed-amd.js", vendor / "widgets" / "embed-amd.js")
    copy(MODULES / "requirejs" / "require.js", vendor / "widgets" / "require.js")
    copy(mathjax / "tex-mml-chtml.js", vendor / "mathjax" / "tex-mml-chtml.js")
    copy(mathjax / "output" / "chtml" / "fonts" / "woff-v2",
         vendor / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2")
    fonts = [p for p in manager.iterdir() if p.suffix in {".woff", ".woff2", ".ttf", ".eot", ".svg"}]
    for font in fonts:
        copy(font, extra / "@jupyter-widgets" / "html-manager" / "dist" / font.name)
    print(f"copied MathJax, require.js, the widget manager and {len(fonts)} fonts "
          f"into {vendor.relative_to(BOOK.parent)} and {extra.relative_to(BOOK.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
