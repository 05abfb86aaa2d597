"""Deployments: when and where each automation runs (schedules arrive with the deployments issue)."""
