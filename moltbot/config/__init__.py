"""Configuration: moltbot settings (env, moltbot.toml, defaults) and the project config file."""
