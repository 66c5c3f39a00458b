"""The read side of the integration API: metrics, reads, exports."""
