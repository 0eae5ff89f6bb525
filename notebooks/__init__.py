"""fiberflow's notebooks (quick start, a solver, graph analytics), installed with the package so
that ``pynq get-notebooks fiberflow`` delivers them on a board. Each runs top to bottom on the
emulator."""
