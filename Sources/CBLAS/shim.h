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
#endif
