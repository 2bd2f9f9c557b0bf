"""The local host: runs the function folders as the Azure Functions host would, on real local parts
(Azurite storage, HTTPS with a generated certificate, BlobCreated events, timers)."""
