"""The ticket service: consumes incidents, routes them, and runs the six-step loop."""
