"""The Telegram front."""
