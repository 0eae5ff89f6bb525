"""The sparse dataflow overlay, generated with Migen."""
