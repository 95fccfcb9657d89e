"""The status server and its pages: what the daemon shows over HTTP (docs/ARCHITECTURE.md).

``server.py`` serves the probes (/healthz, /readyz), /status, /metrics, the status page (/)
and the programme-health page (/programme); ``*_view.py`` build typed view models from the
daemon's state (runtime/state.py) and the database, ``*_chart.py`` the charts' geometry,
``status_page.py`` renders the templates, ``auth.py`` and ``guard.py`` keep the server safe to
expose. Nothing under runtime/ imports this package except the wiring (runtime/app.py), which
starts the server.
"""
