"""Delivery: token providers, transports (Graph mail, Teams bot/webhook, local outbox), shared rate limits and the
sender service that delivers each rendered ActionMessage exactly once."""
