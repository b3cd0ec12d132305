"""The operator API: a small HTTP JSON API on loopback, on the orchestrator's asyncio loop."""
