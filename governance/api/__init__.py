"""The integration API's shared parts: tokens, auth, errors, rate limits."""
