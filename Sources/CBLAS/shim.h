// OpenBLAS: CBLAS plus the Fortran LAPACK entry points Basin calls (add a prototype when a new one is used).
// Debian's libopenblas-dev ships cblas.h (with openblas_set_num_threads) but no
// lapack.h beside it, so the LAPACK prototypes are declared here.
#ifndef BASIN_CBLAS_SHIM_H
#define BASIN_CBLAS_SHIM_H
#include <cblas.h>

// Symmetric positive definite solve (Cholesky): A X = B, column-major.
void sposv_(const char *uplo, const int *n, const int *nrhs, float *a, const int *lda,
            float *b, const int *ldb, int *info);
void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda,
            double *b, const int *ldb, int *info);

// Not BLAS, but the only C shim the engine links: whether this CPU (and the OS) can run AVX2, for the merge kernels'
// runtime dispatch (Sources/BasinKernels/Kernels.swift). Swift has no cpuid.
static inline int basin_cpu_has_avx2(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}
#endif
