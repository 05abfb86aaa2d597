"""The demo: bundled sample data and `moltbot demo`, which runs the automations on it."""
