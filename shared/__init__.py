"""crmflow domain: rules, planning, stores, delivery. Never imports azure.functions (adapters live in functions/)."""
