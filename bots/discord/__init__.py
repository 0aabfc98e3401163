"""The Discord front."""
