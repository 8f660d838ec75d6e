"""`python -m bench.run`: Postbox against its references, measured side by side in one run."""
