"""swarmstack agent worker: sessions, a tool loop, checkpoints in Redis, Kafka tasks."""
