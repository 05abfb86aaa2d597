"""The daily-report automation: sales data -> KPIs -> chat, e-mail, outbox and Prefect artifacts."""
