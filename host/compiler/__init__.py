"""Sparse tensor algebra from expressions: index notation -> SAM graph -> run.

- :mod:`.expr` parses ``X(i,j) = B(i,k) * C(k,j)``;
- :mod:`.lower` turns it, with formats and a loop order, into a :class:`.graph.Graph` of the
  overlay's primitives;
- :mod:`.execute` runs a graph on the primitives' reference models, :mod:`.fast` the named
  kernels' graphs in C (the same bits);
- :mod:`.draw` draws a graph;
- :mod:`.kernel` is the user's side: ``ff.compile``, ``ff.run``; :mod:`.named` the named
  kernels (``ff.spgemm``, ``ff.add``, ...);
- :mod:`.semiring` names the semirings.
"""
