"""The peers the service is measured against, each a tiny server of its own (see bench/README.md)."""
