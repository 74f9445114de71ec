"""The gateway: authenticates bearer tokens and routes each request to its service."""
