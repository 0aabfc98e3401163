"""What the chat fronts share: reply streaming, pacing, message splitting."""
