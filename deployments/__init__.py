"""Deployments: when and where each automation runs (schedules come with the deployments issue)."""
