"""CLI subcommands; each module registers one."""
