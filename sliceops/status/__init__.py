"""`sliceops status`: what the fleet looks like now, read from the target without changing it."""
