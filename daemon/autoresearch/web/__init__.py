"""``autoresearch serve``: the read-only live dashboard and Prometheus ``/metrics`` (Starlette + uvicorn).

access (who may read), source (the session's journal, logs and diffs), view (the page's JSON),
chart (the progress chart as SVG), metrics (the Prometheus collector), app (routes and the event
stream), server (binding and running uvicorn). Importing this package loads none of them."""
