"""Server-rendered web UI (Jinja2): ops see the alert feed and their count tasks; approvers see
the queue with each recommendation's explanation and position and decide with a reason."""
