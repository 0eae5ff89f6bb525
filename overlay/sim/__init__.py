"""Simulation and checks of generated Verilog: the Verilator build, the harnesses that run a
primitive or a lane from Python, testbench helpers, and lint."""
