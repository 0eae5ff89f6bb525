"""The shell around the lanes: the control CPU, the AXI4-Lite register front end, the DMA
engines and their AXI ports (with the formal checks of their AXI rules), and the top level that
wires them to the lanes' buffers."""
