"""Sessions in Redis: the store, its keys, codec, limits, Lua scripts and export."""
