"""The model gateway: LiteLLM's proxy between the agents and the models (keys, budgets,
rate limits, fallbacks to managed APIs)."""
