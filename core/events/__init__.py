"""Events about sessions and turns: the stream they go to, expiry notices, webhooks."""
