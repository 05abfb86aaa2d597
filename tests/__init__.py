"""moltbot test suite."""
