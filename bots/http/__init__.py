"""The HTTP server: health, the REST API, its OpenAPI document, metrics, dashboard."""
