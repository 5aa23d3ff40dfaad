"""Every side effect of Lethe: each activity is idempotent and safe to run twice."""
