"""Thin Azure Functions adapters (Blueprints). Each translates a binding, calls one domain function, maps the result."""
