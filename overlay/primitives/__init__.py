"""The SAM primitives: scanners, repeaters, joiners, ALU, reducer, sparse accumulator,
coordinate dropper, array readers and writers, level writers, and the stream type and FIFO
they share; each a Migen block with a Python reference model (``registry`` names them all)."""
