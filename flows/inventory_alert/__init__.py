"""The inventory-alert automation: stock levels -> state transitions -> alerts by severity."""
