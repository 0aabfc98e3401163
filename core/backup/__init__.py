"""Every session as JSON lines, and back."""
