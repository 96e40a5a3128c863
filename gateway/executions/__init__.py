"""Playbook executions: starting, reading, and generic NoETL API calls as a user."""
