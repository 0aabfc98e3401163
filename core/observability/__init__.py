"""What the service tells about itself: logs, metrics, dashboard analytics, activity."""
