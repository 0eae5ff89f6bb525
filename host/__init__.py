"""The host runtime: tensor formats, tiling, DMA images (and, later, devices and kernels)."""
