"""Live results: SSE streams, pending requests, and the events that reach them."""
