"""Serving layer: vLLM model servers and their sizing and argument rendering."""
