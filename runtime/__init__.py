"""The worker side: model-set sources -> adapters -> one FastChat worker serving the whole set."""
