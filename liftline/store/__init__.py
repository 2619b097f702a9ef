"""In-memory partition state and its durable copy in Redis."""
