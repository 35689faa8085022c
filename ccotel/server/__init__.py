"""The daemon's one HTTP server: /metrics, /healthz, the page and its JSON API.

- ``httpd``: the server (standard library http.server, a bounded worker pool, deadlines);
- ``access``: who may be served (bind policy, Host names);
- ``auth``: basic auth and its salted password hash (``ccotel hash-password``).
"""
