"""The devices behind ``ff.open``: the protocol they share, the emulator and its cycle model,
the rtl shell in Verilator, the PYNQ board (and its simulation), the Dask cluster, the shell's
job protocol and resident matrices."""
