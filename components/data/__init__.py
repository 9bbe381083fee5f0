"""Data plane: the session store, the vector store, the event bus and their certificates."""
