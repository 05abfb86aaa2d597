"""The webhook gateway: verified webhooks into a durable inbox, dispatched as Prefect flow runs."""
