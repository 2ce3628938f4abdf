// nvcc instantiation of the test tile GEMM: proves the mma.sync / ldmatrix / cp.async mainloop
// compiles for every arch and lets the SASS checks find HMMA, LDSM and LDGSTS in it.
#include "../kernels/testing/tile_gemm.cuh"
