"""Automation knowledge shared by several flows: orders table, Forms responses, table checks."""
