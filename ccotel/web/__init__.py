"""The web page and its JSON API (docs/web.md).

- ``routes``: parameters in, JSON out (``Web.handle``), the page's static files; its SQL is
  ``ccotel.state.queries`` (read-only);
- ``shape``: the JSON vocabulary, costs rounded at the edge;
- ``waterfall``: a session's span tree, built from its transcripts and cached.
"""

from ccotel.web.routes import Web, first_hour

__all__ = ["Web", "first_hour"]
