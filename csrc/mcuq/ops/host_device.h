// MCUQ_HOST_DEVICE: marks the scalar formulas that the CPU kernels and the
// CUDA kernels share (compiled for both by nvcc, plain inline functions
// elsewhere).
#pragma once

#if defined(__CUDACC__)
#define MCUQ_HOST_DEVICE __host__ __device__
#else
#define MCUQ_HOST_DEVICE
#endif
