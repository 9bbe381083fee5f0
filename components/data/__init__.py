"""The agents' data plane: event bus, session store, vector store and their certificates."""
