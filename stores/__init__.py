"""Stores: each behind a small typed Protocol, with its boto3 adapter, and in-memory fakes in `testing`."""
