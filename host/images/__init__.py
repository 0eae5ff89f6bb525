"""What the host hands a device and gets back: DMA images of tiled tensors (the packer, in C
and in numpy, and the unpacker that trusts nothing), result regions, image memory and job
descriptors."""
