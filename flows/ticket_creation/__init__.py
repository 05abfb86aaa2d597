"""The ticket-creation automation: form answers and events -> Jira issues, never twice."""
