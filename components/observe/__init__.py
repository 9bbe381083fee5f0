"""Observability: the monitoring release, monitors, alert and cost rules, dashboards."""
