"""Workers: partition duty, membership, and the process pool."""
