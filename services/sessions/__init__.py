"""Sessions service: projects and work sessions (start/stop, history, totals)."""
