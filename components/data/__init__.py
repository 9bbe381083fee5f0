"""The agents' data plane: event bus, session store and vector store."""
