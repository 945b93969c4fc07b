"""The embedded server: agent connections, collections, ingestion into durable storage."""
