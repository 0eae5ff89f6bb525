"""The host runtime: tensor formats, tiling, DMA images, devices and kernels."""
