"""Development tools: the local infrastructure (an embedded PostgreSQL and broker), the runner
behind `make run`, and the contract generator. Not part of what runs in production: the image
leaves this package out."""
