"""Locust load tests, the local target and the service launchers they share."""
