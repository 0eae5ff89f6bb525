"""Board definitions and deployment."""
