"""The model provider: OpenRouter's client and its circuit breaker."""
