"""GPU worker processes: pull batches of jobs from Redis, run the Tempo model, keep the segment cache."""
