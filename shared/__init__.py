"""Library shared by the four services: settings, events, Kafka, database, outbox/inbox."""
