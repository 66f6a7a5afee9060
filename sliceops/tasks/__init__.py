"""One module per concern of the deploy; deploy.py calls their `converge(inv)` in order."""
