"""The dashboard page: one self-contained HTML document.

Written as three files beside this module (``page.html``, ``page.css``,
``page.js``) for editing, and served as one document with the style and the
script inline: the page loads nothing from anywhere, not even from this server
(it only polls the JSON view), so it works on a machine without internet access.
The Content-Security-Policy sent with it holds the browser to that.
"""

from __future__ import annotations

import functools
from importlib import resources

CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")


@functools.cache
def render() -> str:
    """The page's HTML (read once per process)."""
    here = resources.files("liftline.dashboard")
    html = (here / "page.html").read_text(encoding="utf-8")
    css = (here / "page.css").read_text(encoding="utf-8")
    js = (here / "page.js").read_text(encoding="utf-8")
    if "</script" in js.lower() or "</style" in css.lower():
        raise ValueError("the dashboard's script or style would end its own element")
    return html.replace("/*{{CSS}}*/", css).replace("//{{JS}}", js)
