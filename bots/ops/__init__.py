"""Operator tools: backup and restore, Redis Commander."""
