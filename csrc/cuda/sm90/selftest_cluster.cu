// nvcc instantiation of the thread-block-cluster self-test kernels (sm_90a only): not bound;
// built so tests/test_emu_cluster.py can check the multicast TMA's SASS.
#include "../../kernels/testing/cluster_kernels.cuh"
