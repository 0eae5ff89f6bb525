"""The lanes: the SpMV / SpMM lane, its pipelined arithmetic (and the fp32 reference it is
bit-identical to), its interleaved accumulator, its start logic, and the placeholder lane for
bring-up."""
